// Message catalogues and locale formatting for the wallboard. Every string the page shows
// comes from here; numbers, money, percentages and durations go through Intl for the locale.

export const LANGUAGES = ["zh-CN", "zh-TW", "en"];

const en = {
  title: "Callboard",
  all_teams: "All teams",
  team: "Team {team}",
  screen_floor: "Floor",
  screen_agents: "Agents",
  screen_leaders: "Leaderboard",
  screen_pace: "Pace",
  screen_contests: "Contests",
  contest_kpi: "Ranked by {kpi}",
  contest_kpi_asc: "Ranked by {kpi}, lowest first",
  contest_left: "{value} left",
  contest_ended: "Ended",
  contest_prize: "Prize: {prize}",
  contest_none: "No contest running",
  contest_nobody: "Nobody ranked yet",
  contest_winner_title: "Contest won!",
  contest_winner: "{who} won {name}",
  contest_tie: " & ",
  today_vs_target: "Today against target",
  no_target: "No target set for today",
  attainment: "{value} of target",
  pace_ahead: "Ahead of pace by {value}",
  pace_behind: "Behind pace by {value}",
  pace_on: "On pace",
  target_sales: "{actual} of {target} sales",
  target_revenue: "{actual} of {target}",
  sales: "Sales",
  revenue: "Revenue",
  sales_per_hour: "Sales per hour",
  conversion: "Conversion",
  connect_rate: "Connect rate",
  contact_rate: "Contact rate",
  drops: "Dropped calls",
  drop_rate_of: "{rate} dropped · max {max}",
  drop_rate_unknown: "drop rate not available yet",
  paused_agents: "Agents paused",
  paused_of: "of {n} logged in",
  dials: "Dials",
  connects: "connects",
  contacts: "contacts",
  contacts_per_hour: "Contacts per hour",
  per_logged_in_hour: "per logged-in hour",
  state_available: "Waiting",
  state_on_call: "On call",
  state_wrap_up: "Wrap-up",
  state_paused: "Paused",
  state_logged_out: "Logged out",
  quiet: "Quiet",
  quiet_title: "No event from this agent for {value}",
  sales_badge: "{n} sales",
  sales_badge_one: "{n} sale",
  no_agents: "No agents have logged in today.",
  leaderboard_by: "Top 10 by",
  rank: "Rank",
  agent: "Agent",
  value: "Value",
  no_ranking: "Nobody ranked yet",
  rank_up: "up {n}",
  rank_down: "down {n}",
  rank_same: "unchanged",
  rank_new: "new",
  pace_chart: "Sales per hour today",
  today: "Today",
  yesterday: "Yesterday",
  needed: "Pace needed",
  pace_unavailable: "Hourly pace is not available from this server yet.",
  sale_banner: "New sale!",
  sale_by: "{agent} · {team}",
  updated_ago: "Updated {value} ago",
  updated_never: "No data yet",
  stale_stream: "Connection lost. Reconnecting… The numbers below may be out of date.",
  stale_lag: "The pipeline is behind (status: {status}). The numbers below may be out of date.",
  stale_quiet: "No word from the server for {value}. The numbers below may be out of date.",
  live: "Live",
  stale: "Stale",
  connecting: "Connecting…",
  err_unauthorized_title: "This board's key is not accepted",
  err_unauthorized:
    "The key is wrong, revoked or missing. Ask your Callboard administrator for a new board link (it ends in #key=…) and open it on this screen.",
  err_forbidden_title: "This key may not show this board",
  err_forbidden:
    "The key is not allowed to read {what}. Open the board without the team in its address, or ask your administrator for a key that covers it.",
  err_forbidden_what: "these teams",
  err_unreachable_title: "The Callboard server cannot be reached",
  err_unreachable: "Retrying by itself. Check the network if this lasts.",
  retry_in: "Next try in {value}.",
  theme: "Theme",
  theme_dark: "Dark",
  theme_light: "Light",
  sound_on: "Sound on",
  sound_off: "Sound off",
  rotate_on: "Rotating",
  rotate_off: "Rotate",
  language: "Language",
  close: "Close",
  lead_view: "Agent {agent}",
  lead_today: "Today",
  lead_targets: "Targets and pacing",
  lead_no_targets: "No target applies to this agent now.",
  lead_diagnosis: "Why behind",
  lead_no_diagnosis: "Nothing to diagnose: no result target behind.",
  lead_status_on_track: "on track",
  lead_status_at_risk: "at risk",
  lead_status_behind: "behind",
  lead_status_not_started: "not started",
  lead_projection: "projection {value}",
  lead_target_line: "{kpi} ({period}): {actual} of {target}",
  lead_state: "{state} for {value}",
  loading: "Loading…",
  unavailable: "not available",
  kpi_sales: "Sales",
  kpi_revenue: "Revenue",
  kpi_dials: "Dials",
  kpi_connects: "Connects",
  kpi_contacts: "Contacts",
  kpi_talk_seconds: "Talk time",
  kpi_quotes: "Quotes",
  kpi_conversion_rate: "Conversion",
  kpi_close_rate: "Close rate",
  kpi_connect_rate: "Connect rate",
  kpi_contact_rate: "Contact rate",
  kpi_sales_per_hour: "Sales per hour",
  kpi_contacts_per_hour: "Contacts per hour",
  kpi_avg_talk_seconds: "Average talk time",
  kpi_drops: "Dropped calls",
  kpi_drop_rate: "Drop rate",
  cause_driver: "Driver",
  period_day: "day",
  period_week: "week",
  period_month: "month",
  period_quarter: "quarter",
  period_year: "year",
};

const zhCN = {
  title: "Callboard 电销看板",
  all_teams: "全部团队",
  team: "团队 {team}",
  screen_floor: "现场总览",
  screen_agents: "坐席状态",
  screen_leaders: "排行榜",
  screen_pace: "每小时进度",
  screen_contests: "竞赛",
  contest_kpi: "按{kpi}排名",
  contest_kpi_asc: "按{kpi}排名（低者胜）",
  contest_left: "剩余 {value}",
  contest_ended: "已结束",
  contest_prize: "奖品：{prize}",
  contest_none: "暂无进行中的竞赛",
  contest_nobody: "暂无排名",
  contest_winner_title: "竞赛冠军！",
  contest_winner: "{who} 赢得「{name}」",
  contest_tie: "、",
  today_vs_target: "今日目标完成",
  no_target: "今日未设目标",
  attainment: "完成 {value}",
  pace_ahead: "领先进度 {value}",
  pace_behind: "落后进度 {value}",
  pace_on: "符合进度",
  target_sales: "{actual} / {target} 单",
  target_revenue: "{actual} / {target}",
  sales: "成交单数",
  revenue: "销售额",
  sales_per_hour: "每小时成交",
  conversion: "销售转化率",
  connect_rate: "通话接通率",
  contact_rate: "有效联通率",
  drops: "掉线数",
  drop_rate_of: "掉线率 {rate} · 上限 {max}",
  drop_rate_unknown: "暂无掉线率",
  paused_agents: "暂停中坐席",
  paused_of: "在线 {n} 人",
  dials: "外拨次数",
  connects: "接通",
  contacts: "有效联通",
  contacts_per_hour: "每小时有效联通",
  per_logged_in_hour: "按在线小时",
  state_available: "等待中",
  state_on_call: "通话中",
  state_wrap_up: "话后处理",
  state_paused: "暂停",
  state_logged_out: "已登出",
  quiet: "无动态",
  quiet_title: "该坐席 {value} 无任何事件",
  sales_badge: "{n} 单",
  no_agents: "今日尚无坐席登录。",
  leaderboard_by: "前 10 名 · 按",
  rank: "名次",
  agent: "坐席",
  value: "数值",
  no_ranking: "暂无排名",
  rank_up: "上升 {n}",
  rank_down: "下降 {n}",
  rank_same: "持平",
  rank_new: "新上榜",
  pace_chart: "今日每小时成交",
  today: "今天",
  yesterday: "昨天",
  needed: "目标所需进度",
  pace_unavailable: "服务器暂不提供每小时进度。",
  sale_banner: "新成交！",
  sale_by: "{agent} · {team}",
  updated_ago: "{value}前更新",
  updated_never: "暂无数据",
  stale_stream: "连接中断，正在重连…… 以下数字可能已过时。",
  stale_lag: "数据处理滞后（状态：{status}），以下数字可能已过时。",
  stale_quiet: "服务器已 {value} 无响应，以下数字可能已过时。",
  live: "实时",
  stale: "已过时",
  connecting: "连接中……",
  err_unauthorized_title: "看板密钥无效",
  err_unauthorized:
    "密钥错误、已被吊销或缺失。请向 Callboard 管理员索取新的看板链接（以 #key=… 结尾），并在此屏幕上打开。",
  err_forbidden_title: "此密钥无权查看该看板",
  err_forbidden:
    "此密钥无权读取{what}。请去掉地址中的团队参数，或向管理员索取覆盖该团队的密钥。",
  err_forbidden_what: "这些团队",
  err_unreachable_title: "无法连接 Callboard 服务器",
  err_unreachable: "正在自动重试。如持续出现，请检查网络。",
  retry_in: "{value}后重试。",
  theme: "主题",
  theme_dark: "深色",
  theme_light: "浅色",
  sound_on: "声音开",
  sound_off: "声音关",
  rotate_on: "轮播中",
  rotate_off: "轮播",
  language: "语言",
  close: "关闭",
  lead_view: "坐席 {agent}",
  lead_today: "今日",
  lead_targets: "目标与进度",
  lead_no_targets: "该坐席当前没有适用的目标。",
  lead_diagnosis: "落后原因",
  lead_no_diagnosis: "无需诊断：没有落后的结果目标。",
  lead_status_on_track: "按进度",
  lead_status_at_risk: "有风险",
  lead_status_behind: "落后",
  lead_status_not_started: "未开始",
  lead_projection: "预计 {value}",
  lead_target_line: "{kpi}（{period}）：{actual} / {target}",
  lead_state: "{state} {value}",
  loading: "加载中……",
  unavailable: "不可用",
  kpi_sales: "成交单数",
  kpi_revenue: "销售额",
  kpi_dials: "外拨次数",
  kpi_connects: "接通数",
  kpi_contacts: "有效联通数",
  kpi_talk_seconds: "通话时长",
  kpi_quotes: "报价次数",
  kpi_conversion_rate: "销售转化率",
  kpi_close_rate: "销售成功率",
  kpi_connect_rate: "通话接通率",
  kpi_contact_rate: "有效联通率",
  kpi_sales_per_hour: "每小时成交",
  kpi_contacts_per_hour: "每小时有效联通",
  kpi_avg_talk_seconds: "平均通话时长",
  kpi_drops: "掉线数",
  kpi_drop_rate: "掉线率",
  cause_driver: "驱动因素",
  period_day: "日",
  period_week: "周",
  period_month: "月",
  period_quarter: "季度",
  period_year: "年",
};

// Traditional Chinese as used on Taiwanese floors (not a character-by-character conversion).
const zhTW = {
  ...zhCN,
  title: "Callboard 電銷看板",
  all_teams: "全部團隊",
  team: "團隊 {team}",
  screen_floor: "現場總覽",
  screen_agents: "座席狀態",
  screen_leaders: "排行榜",
  screen_pace: "每小時進度",
  screen_contests: "競賽",
  contest_kpi: "按{kpi}排名",
  contest_kpi_asc: "按{kpi}排名（低者勝）",
  contest_left: "剩餘 {value}",
  contest_ended: "已結束",
  contest_prize: "獎品：{prize}",
  contest_none: "暫無進行中的競賽",
  contest_nobody: "暫無排名",
  contest_winner_title: "競賽冠軍！",
  contest_winner: "{who} 贏得「{name}」",
  contest_tie: "、",
  today_vs_target: "今日目標達成",
  no_target: "今日未設目標",
  attainment: "達成 {value}",
  pace_ahead: "領先進度 {value}",
  pace_behind: "落後進度 {value}",
  pace_on: "符合進度",
  sales: "成交筆數",
  revenue: "銷售額",
  sales_per_hour: "每小時成交",
  conversion: "銷售轉換率",
  connect_rate: "通話接通率",
  contact_rate: "有效聯絡率",
  drops: "掉線數",
  drop_rate_of: "掉線率 {rate} · 上限 {max}",
  drop_rate_unknown: "暫無掉線率",
  paused_agents: "暫停中座席",
  paused_of: "線上 {n} 人",
  dials: "外撥次數",
  connects: "接通",
  contacts: "有效聯絡",
  contacts_per_hour: "每小時有效聯絡",
  per_logged_in_hour: "依線上小時",
  state_available: "等待中",
  state_on_call: "通話中",
  state_wrap_up: "話後處理",
  state_paused: "暫停",
  state_logged_out: "已登出",
  quiet: "無動態",
  quiet_title: "該座席 {value} 無任何事件",
  sales_badge: "{n} 筆",
  target_sales: "{actual} / {target} 筆",
  no_agents: "今日尚無座席登入。",
  leaderboard_by: "前 10 名 · 依",
  rank: "名次",
  agent: "座席",
  value: "數值",
  no_ranking: "暫無排名",
  rank_up: "上升 {n}",
  rank_down: "下降 {n}",
  rank_same: "持平",
  rank_new: "新上榜",
  pace_chart: "今日每小時成交",
  today: "今天",
  yesterday: "昨天",
  needed: "目標所需進度",
  pace_unavailable: "伺服器暫不提供每小時進度。",
  sale_banner: "新成交！",
  updated_ago: "{value}前更新",
  updated_never: "暫無資料",
  stale_stream: "連線中斷，正在重新連線…… 以下數字可能已過時。",
  stale_lag: "資料處理落後（狀態：{status}），以下數字可能已過時。",
  stale_quiet: "伺服器已 {value} 無回應，以下數字可能已過時。",
  live: "即時",
  stale: "已過時",
  connecting: "連線中……",
  err_unauthorized_title: "看板金鑰無效",
  err_unauthorized:
    "金鑰錯誤、已被撤銷或缺少。請向 Callboard 管理員索取新的看板連結（以 #key=… 結尾），並在此螢幕上開啟。",
  err_forbidden_title: "此金鑰無權檢視此看板",
  err_forbidden:
    "此金鑰無權讀取{what}。請移除網址中的團隊參數，或向管理員索取涵蓋該團隊的金鑰。",
  err_forbidden_what: "這些團隊",
  err_unreachable_title: "無法連線到 Callboard 伺服器",
  err_unreachable: "正在自動重試。若持續發生，請檢查網路。",
  retry_in: "{value}後重試。",
  theme: "主題",
  theme_dark: "深色",
  theme_light: "淺色",
  sound_on: "聲音開",
  sound_off: "聲音關",
  rotate_on: "輪播中",
  rotate_off: "輪播",
  language: "語言",
  close: "關閉",
  lead_view: "座席 {agent}",
  lead_today: "今日",
  lead_targets: "目標與進度",
  lead_no_targets: "此座席目前沒有適用的目標。",
  lead_diagnosis: "落後原因",
  lead_no_diagnosis: "無需診斷：沒有落後的結果目標。",
  lead_status_on_track: "符合進度",
  lead_status_at_risk: "有風險",
  lead_status_behind: "落後",
  lead_status_not_started: "未開始",
  lead_projection: "預估 {value}",
  loading: "載入中……",
  unavailable: "無法取得",
  kpi_sales: "成交筆數",
  kpi_revenue: "銷售額",
  kpi_dials: "外撥次數",
  kpi_connects: "接通數",
  kpi_contacts: "有效聯絡數",
  kpi_talk_seconds: "通話時長",
  kpi_quotes: "報價次數",
  kpi_conversion_rate: "銷售轉換率",
  kpi_close_rate: "銷售成功率",
  kpi_connect_rate: "通話接通率",
  kpi_contact_rate: "有效聯絡率",
  kpi_sales_per_hour: "每小時成交",
  kpi_contacts_per_hour: "每小時有效聯絡",
  kpi_avg_talk_seconds: "平均通話時長",
  kpi_drops: "掉線數",
  kpi_drop_rate: "掉線率",
  cause_driver: "驅動因素",
  period_quarter: "季",
};

const CATALOGUES = { en, "zh-CN": zhCN, "zh-TW": zhTW };

export function pickLanguage(asked) {
  if (LANGUAGES.includes(asked)) return asked;
  const wanted = [asked, ...(navigator.languages || [])].filter(Boolean);
  for (const tag of wanted) {
    const lower = tag.toLowerCase();
    if (lower.startsWith("zh")) {
      return /tw|hk|mo|hant/.test(lower) ? "zh-TW" : "zh-CN";
    }
    if (lower.startsWith("en")) return "en";
  }
  return "zh-CN";
}

// Formatters are made once per language and currency: Intl constructors are not cheap,
// and a board formats hundreds of numbers a second.
export class Locale {
  constructor(lang, currency, timeZone) {
    this.lang = lang;
    this.messages = CATALOGUES[lang] || en;
    this.plural = new Intl.PluralRules(lang);
    this.integer = new Intl.NumberFormat(lang, { maximumFractionDigits: 0 });
    this.decimal = new Intl.NumberFormat(lang, { maximumFractionDigits: 1 });
    this.percent = new Intl.NumberFormat(lang, {
      style: "percent",
      minimumFractionDigits: 1,
      maximumFractionDigits: 1,
    });
    this.moneyFormat = new Intl.NumberFormat(lang, {
      style: "currency",
      currency,
      currencyDisplay: "narrowSymbol",
      maximumFractionDigits: 0,
    });
    this.moneyExact = new Intl.NumberFormat(lang, {
      style: "currency",
      currency,
      currencyDisplay: "narrowSymbol",
    });
    this.units = {
      s: new Intl.NumberFormat(lang, { style: "unit", unit: "second", unitDisplay: "short" }),
      min: new Intl.NumberFormat(lang, { style: "unit", unit: "minute", unitDisplay: "short" }),
      h: new Intl.NumberFormat(lang, { style: "unit", unit: "hour", unitDisplay: "short" }),
    };
    this.time = new Intl.DateTimeFormat(lang, {
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
      timeZone: timeZone || undefined,
    });
  }

  t(key, params) {
    // English says "1 sale" but "2 sales"; Chinese has one form.
    const plural = params && "n" in params ? `${key}_${this.plural.select(Number(params.count ?? 2))}` : null;
    let text = (plural && this.messages[plural]) ?? this.messages[key] ?? en[key] ?? key;
    if (params) {
      for (const [name, value] of Object.entries(params)) {
        text = text.replaceAll(`{${name}}`, value);
      }
    }
    return text;
  }

  count(value) {
    return value === null || value === undefined ? "—" : this.integer.format(Number(value));
  }

  rate(value) {
    return value === null || value === undefined ? "—" : this.decimal.format(Number(value));
  }

  pct(value) {
    return value === null || value === undefined ? "—" : this.percent.format(Number(value));
  }

  // Money arrives as a decimal string; whole units on a wall, cents where asked.
  money(value, exact = false) {
    if (value === null || value === undefined) return "—";
    return (exact ? this.moneyExact : this.moneyFormat).format(Number(value));
  }

  // A time in state as a clock: 4:07, 1:02:33.
  clock(seconds) {
    const total = Math.max(0, Math.floor(seconds));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return `${h ? `${h}:` : ""}${mm}:${String(s).padStart(2, "0")}`;
  }

  // A duration in words for sentences: "12 s", "5 min", "2 h".
  duration(seconds) {
    const total = Math.max(0, Math.round(seconds));
    if (total < 120) return this.units.s.format(total);
    if (total < 7200) return this.units.min.format(Math.floor(total / 60));
    return this.units.h.format(Math.floor(total / 3600));
  }

  kpi(key, value) {
    if (value === null || value === undefined) return "—";
    if (key === "revenue" || key.startsWith("avg_order") || key.startsWith("avg_revenue")) {
      return this.money(value);
    }
    if (key.endsWith("_rate") || key === "occupancy") return this.pct(value);
    if (key.endsWith("_per_hour")) return this.rate(value);
    if (key.endsWith("_seconds")) return this.clock(Number(value));
    return this.count(value);
  }

  kpiName(key) {
    return this.messages[`kpi_${key}`] ?? en[`kpi_${key}`] ?? key.replaceAll("_", " ");
  }
}
