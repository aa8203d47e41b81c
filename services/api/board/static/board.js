// The wallboard: one live stream (/v1/stream) feeds the floor summary, the agent grid, the
// leaderboard of each team, the pace chart, the running contests, the sale celebrations and
// the freshness line; targets and the team lead's view are read from the API.
//
// A TV runs this page for weeks: every collection is bounded, DOM nodes are reused by key,
// listeners are attached once (delegation), and timers are the few created at start.

import { LANGUAGES, Locale, pickLanguage } from "./i18n.js";
import { HttpError, Stream } from "./stream.js";
import { renderPaceChart } from "./pace.js";

const KEY_STORE = "callboard.board.key";
const PREFS_STORE = "callboard.board.prefs";
const SCREENS = ["floor", "agents", "leaders", "pace", "contests"];
// The TV playlist (the reference wallboard's suggested one): seconds each screen shows at
// rotate=30, each team's leaderboard a screen of its own; other rotate values scale it.
const PLAYLIST = [
  ["floor", 30],
  ["agents", 30],
  ["leaders", 20],
  ["pace", 20],
  ["contests", 20],
];
const CONTEST_ROWS = 10;
const WINNER_MS = 10000;
const ENDED_CONTESTS_MAX = 50;
// The day's sales figures every board view starts from.
const SALES_METRICS = [
  "dials",
  "connects",
  "contacts",
  "sales",
  "revenue",
  "conversion_rate",
  "connect_rate",
  "contact_rate",
  "sales_per_hour",
];
const FLOOR_METRICS = [...SALES_METRICS, "contacts_per_hour", "drops", "drop_rate"];
const LEAD_METRICS = [...SALES_METRICS, "avg_talk_seconds"];
const LEADER_KPIS = [
  "sales",
  "revenue",
  "conversion_rate",
  "sales_per_hour",
  "contacts",
  "connect_rate",
  "dials",
];
const STATE_ICONS = {
  available: "◯",
  on_call: "☎",
  wrap_up: "✎",
  paused: "❚❚",
  logged_out: "⊘",
};
// How long without any word from the stream (events or keep-alives, at least every 5 s)
// before the board says it may be showing old numbers.
const SILENCE_STALE_MS = 12000;
// A burst shows its newest few; older ones are counted, not shown.
const SALE_QUEUE_MAX = 5;
const SEEN_SALES_MAX = 500;
const CELEBRATE_MS = 6000;
const CELEBRATE_BUSY_MS = 2500;
const TARGETS_REFRESH_MS = 30000;
const REFUSED_RETRY_MS = 30000;
// The stream sends agents at least every 5 s and pace on change; a server that does not
// (an older API) is read directly instead, no more often than this.
const AGENTS_FALLBACK_MS = 6000;
const PACE_FALLBACK_MS = 30000;
const FALLBACK_AFTER_OPEN_MS = 2500;

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function readPrefs() {
  try {
    return JSON.parse(localStorage.getItem(PREFS_STORE) || "{}");
  } catch (_) {
    return {};
  }
}

function savePrefs(prefs) {
  try {
    localStorage.setItem(PREFS_STORE, JSON.stringify(prefs));
  } catch (_) {
    /* a private window: preferences last this session only */
  }
}

// The key: from the URL fragment (never sent to a server), kept in localStorage, and the
// fragment removed from the address bar so that it does not linger on a public screen.
function takeKey() {
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
  const given = fragment.get("key");
  if (given !== null) {
    try {
      if (given) localStorage.setItem(KEY_STORE, given.trim());
      else localStorage.removeItem(KEY_STORE);
    } catch (_) {
      /* ignored: the key then lasts this page only */
    }
    history.replaceState(null, "", location.pathname + location.search);
    return given.trim() || null;
  }
  try {
    return localStorage.getItem(KEY_STORE);
  } catch (_) {
    return null;
  }
}

// rotate=30 (or rotate=playlist) is the reference playlist's 30/20 s; rotate=N scales it so
// that the longest screen shows N seconds.
function rotateParam(raw) {
  if (raw === "playlist") return 30;
  return Math.max(0, Number(raw || 0)) || 0;
}

const params = new URLSearchParams(location.search);
const prefs = readPrefs();
const askedTeams = params
  .getAll("team")
  .flatMap((v) => v.split(","))
  .map((v) => v.trim())
  .filter(Boolean);

const state = {
  key: takeKey(),
  config: { drop_rate_max: "0.03", state_seconds: {}, currency: "CNY", timezone: "" },
  locale: null,
  lang: pickLanguage(params.get("lang") || prefs.lang),
  theme: params.get("theme") || prefs.theme || "dark",
  sound: prefs.sound === true,
  screen: SCREENS.includes(params.get("screen")) ? params.get("screen") : "floor",
  rotateSeconds: rotateParam(params.get("rotate")),
  rotating: false,
  leaderKpi: LEADER_KPIS.includes(params.get("kpi")) ? params.get("kpi") : prefs.kpi || "sales",
  views: ["metrics", "agents", "sale", "pace", "status", "leaderboard", "contests"],
  metricKeys: [...FLOOR_METRICS],
  metrics: null,
  agents: null,
  pace: null,
  status: null,
  target: null,
  leaderboards: new Map(),
  contests: [],
  contestsSeen: new Map(),
  contestsEnded: [],
  winnerQueue: [],
  step: null,
  clockOffsetMs: 0,
  streamState: "connecting",
  everOpen: false,
  lastWordAt: Date.now(),
  refusal: null,
  saleQueue: [],
  seenSales: [],
  seenSet: new Set(),
  celebrating: false,
  openAgent: null,
  tiles: new Map(),
};

// -- Talking to the API ----------------------------------------------------------------

function authHeaders() {
  return state.key ? { Authorization: `Bearer ${state.key}` } : {};
}

function teamQuery(search) {
  for (const team of askedTeams) search.append("team_id", team);
  return search;
}

async function getJson(path, search) {
  const url = search ? `${path}?${search}` : path;
  const response = await fetch(url, { headers: authHeaders(), cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) throw new HttpError(response.status, body);
  return body;
}

// A KPI another part of the deployment has not shipped yet answers 422 naming it: ask again
// without it, and show "—" where it would go.
async function getMetrics(search, keys) {
  let wanted = [...keys];
  for (let attempt = 0; attempt < 4; attempt += 1) {
    search.set("metrics", wanted.join(","));
    try {
      return await getJson("/v1/metrics", search);
    } catch (error) {
      const unknown = error.body?.error?.details?.unknown;
      if (error.status !== 422 || !Array.isArray(unknown) || !unknown.length) throw error;
      wanted = wanted.filter((k) => !unknown.includes(k));
    }
  }
  throw new Error("metrics not available");
}

// -- The stream ------------------------------------------------------------------------

// Every team's leaderboard comes on the stream (leaderboard_by=team), computed once per
// commit for every board that shows the same teams: no board reads /v1/leaderboard.
function streamUrl() {
  const search = teamQuery(new URLSearchParams());
  if (state.views.includes("leaderboard")) {
    search.set("leaderboard", state.leaderKpi);
    search.set("leaderboard_by", "team");
    search.set("limit", "10");
  }
  search.set("views", state.views.join(","));
  search.set("period", "today");
  search.set("metrics", state.metricKeys.join(","));
  return `/v1/stream?${search}`;
}

const stream = new Stream({
  url: streamUrl,
  headers: authHeaders,
  onEvent: handleEvent,
  onState: handleStreamState,
});

function handleStreamState(next, detail) {
  state.streamState = next;
  if (next === "open") {
    state.openedAt = Date.now();
    state.everOpen = true;
    state.lastWordAt = Date.now();
    clearRefusal();
    refreshTargets();
  } else if (next === "refused") {
    handleRefusal(detail);
  } else if (next === "retrying") {
    if (!state.everOpen && !(detail.reason instanceof HttpError)) {
      showNotice("unreachable", detail.wait);
    }
  }
  renderFreshness();
}

function handleRefusal(error) {
  const unknown = error.body?.error?.details?.unknown;
  if (error.status === 422 && Array.isArray(unknown) && unknown.length) {
    // Views or KPIs this server does not offer (yet): go on without them.
    const views = state.views.filter((v) => !unknown.includes(v));
    const keys = state.metricKeys.filter((k) => !unknown.includes(k));
    if (views.length !== state.views.length || keys.length !== state.metricKeys.length) {
      state.views = views.length ? views : ["metrics"];
      state.metricKeys = keys;
      if (!state.views.includes("pace")) state.pace = null;
      stream.restart();
      return;
    }
  }
  if (error.status === 422 && stream.lastEventId !== null) {
    // A resume point this server does not know (a different server behind the address):
    // start afresh from now.
    stream.lastEventId = null;
    stream.restart();
    return;
  }
  if (error.status === 401) showNotice("unauthorized");
  else if (error.status === 403) showNotice("forbidden");
  else showNotice("unreachable", REFUSED_RETRY_MS);
  clearTimeout(state.refusedTimer);
  state.refusedTimer = setTimeout(() => stream.restart(), REFUSED_RETRY_MS);
}

// Times in state are differences from the server's timestamps: follow the server's clock
// when this screen's is clearly off (a TV without time sync), not for the network's delay.
const CLOCK_SKEW_MS = 3000;
function adjustClock(sentAt) {
  const offset = Date.parse(sentAt) - Date.now();
  if (Number.isFinite(offset)) {
    state.clockOffsetMs = Math.abs(offset) > CLOCK_SKEW_MS ? offset : 0;
  }
}

function unwrap(payload) {
  if (payload && typeof payload === "object" && "data" in payload && "as_of" in payload) {
    return payload.data;
  }
  return payload;
}

function handleEvent(name, payload) {
  state.lastWordAt = Date.now();
  const data = unwrap(payload);
  switch (name) {
    case "metrics":
      state.metrics = (data.rows && data.rows[0]) || {};
      renderFloor();
      break;
    case "leaderboard":
      if (data.metric === state.leaderKpi) {
        state.leaderboards = Array.isArray(data.teams)
          ? new Map(data.teams.map((t) => [t.team_id, t.rows || []]))
          : new Map([[askedTeams.length === 1 ? askedTeams[0] : "", data.rows || []]]);
        renderLeaderboards();
      }
      break;
    case "contests":
      takeContests(data.contests || []);
      break;
    case "agents":
      state.agentsAt = Date.now();
      state.agents = data;
      renderAgents();
      renderFloor();
      break;
    case "sale":
      celebrate(data);
      break;
    case "pace":
      state.paceAt = Date.now();
      state.pace = data;
      renderPace();
      renderFloor();
      break;
    case "status":
      state.status = data;
      adjustClock(data.sent_at);
      renderFreshness();
      break;
    case "error":
      if (data.code === "unauthorized") {
        stream.stop();
        handleRefusal(new HttpError(401, { error: data }));
      }
      break;
    default:
      break;
  }
}

// -- Screens ---------------------------------------------------------------------------

function serverNow() {
  return Date.now() + state.clockOffsetMs;
}

function setText(node, text) {
  if (node && node.textContent !== text) node.textContent = text;
}

function num(value) {
  if (value === null || value === undefined || value === "") return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

function agentsOnBoard() {
  const agents = state.agents?.agents || [];
  return askedTeams.length ? agents.filter((a) => askedTeams.includes(a.team_id)) : agents;
}

function renderFloor() {
  const L = state.locale;
  const m = state.metrics || {};
  setText($("#v-sales"), L.count(m.sales));
  setText($("#v-revenue"), L.money(m.revenue));
  setText($("#v-sph"), L.rate(m.sales_per_hour));
  setText($("#v-conversion"), L.pct(m.conversion_rate));
  setText($("#v-connect"), L.pct(m.connect_rate));
  setText($("#v-cph"), L.rate(m.contacts_per_hour));
  setText($("#v-contacts"), `${L.count(m.contacts)} ${L.t("contacts")}`);
  setText($("#v-contact"), L.pct(m.contact_rate));
  setText($("#v-dials"), L.count(m.dials));
  setText($("#v-connects"), `${L.count(m.connects)} ${L.t("connects")}`);

  const drops = num(m.drops);
  const dropRate = num(m.drop_rate);
  const dropMax = num(state.config.drop_rate_max) ?? 0.03;
  setText($("#v-drops"), drops === null ? "—" : L.count(drops));
  setText(
    $("#v-drop-rate"),
    dropRate === null
      ? L.t("drop_rate_unknown")
      : L.t("drop_rate_of", { rate: L.pct(dropRate), max: L.pct(dropMax) }),
  );
  $("#card-drops").classList.toggle("alarm", dropRate !== null && dropRate > dropMax);

  const present = agentsOnBoard().filter((a) => a.state !== "logged_out");
  const paused = present.filter((a) => a.state === "paused").length;
  setText($("#v-paused"), state.agents ? L.count(paused) : "—");
  setText($("#v-paused-of"), L.t("paused_of", { n: L.count(present.length) }));

  renderTarget();
}

// Today against target: the day's target (sales first, else revenue) with the expected
// amount by now from the API's pacing, set against the live count.
function renderTarget() {
  const L = state.locale;
  const goal = currentGoal();
  const card = $("#card-target");
  if (!goal) {
    card.classList.add("no-target");
    setText($("#v-target"), L.t("no_target"));
    setText($("#v-attainment"), "");
    setText($("#v-pace"), "");
    $("#bar-fill").style.width = "0%";
    $("#bar-expected").style.display = "none";
    return;
  }
  card.classList.remove("no-target");
  const m = state.metrics || {};
  const actual = num(m[goal.kpi]) ?? 0;
  const show = goal.kpi === "revenue" ? (v) => L.money(v) : (v) => L.count(v);
  setText(
    $("#v-target"),
    L.t(goal.kpi === "revenue" ? "target_revenue" : "target_sales", {
      actual: show(actual),
      target: show(goal.value),
    }),
  );
  const share = goal.value > 0 ? actual / goal.value : 0;
  setText($("#v-attainment"), L.t("attainment", { value: L.pct(share) }));
  $("#bar-fill").style.width = `${Math.min(100, share * 100).toFixed(1)}%`;
  card.classList.toggle("done", share >= 1);
  if (goal.expected !== null) {
    const marker = $("#bar-expected");
    marker.style.display = "";
    marker.style.left = `${Math.min(100, (goal.expected / goal.value) * 100).toFixed(1)}%`;
    const gap = actual - goal.expected;
    const key = Math.abs(gap) < 0.5 ? "pace_on" : gap > 0 ? "pace_ahead" : "pace_behind";
    setText($("#v-pace"), L.t(key, { value: show(Math.abs(gap)) }));
    card.classList.toggle("behind", gap < -0.5);
  } else {
    $("#bar-expected").style.display = "none";
    setText($("#v-pace"), "");
  }
}

function currentGoal() {
  if (state.target) return state.target;
  const target = state.pace?.target;
  if (!target) return null;
  const kpi = num(target.sales) !== null ? "sales" : num(target.revenue) !== null ? "revenue" : null;
  if (!kpi) return null;
  // Expected by now: the needed pace of the hours gone, and the share of this hour gone.
  const hours = state.pace.hours || [];
  const nowHour = currentLocalHour();
  let expected = null;
  for (const h of hours) {
    const needed = num(kpi === "sales" ? h.needed_sales : h.needed_revenue);
    if (needed === null) continue;
    expected = expected ?? 0;
    if (h.hour < nowHour.hour) expected += needed;
    else if (h.hour === nowHour.hour) expected += needed * nowHour.fraction;
  }
  return { kpi, value: num(target[kpi]), expected };
}

function currentLocalHour() {
  const zone = state.pace?.timezone || state.agents?.timezone || state.config.timezone;
  const parts = new Intl.DateTimeFormat("en-GB", {
    timeZone: zone || undefined,
    hour: "numeric",
    minute: "numeric",
    hourCycle: "h23",
  }).formatToParts(new Date(serverNow()));
  const hour = Number(parts.find((p) => p.type === "hour").value);
  const minute = Number(parts.find((p) => p.type === "minute").value);
  return { hour, fraction: minute / 60 };
}

async function refreshTargets() {
  clearTimeout(state.targetTimer);
  state.targetTimer = setTimeout(refreshTargets, TARGETS_REFRESH_MS);
  const search = new URLSearchParams();
  if (askedTeams.length) {
    search.set("scope", "team");
    for (const team of askedTeams) search.append("team_id", team);
  }
  let rows = [];
  try {
    rows = (await getJson("/v1/pacing", search)).targets || [];
  } catch (_) {
    return;
  }
  const day = rows.filter(
    (r) => r.period === "day" && (r.kpi === "sales" || r.kpi === "revenue") && r.scope !== "agent",
  );
  const floor = day.filter((r) => r.scope === "floor");
  const teams = day.filter(
    (r) => r.scope === "team" && (!askedTeams.length || askedTeams.includes(r.scope_id)),
  );
  const pool = !askedTeams.length && floor.length ? floor : teams;
  const kpi = pool.some((r) => r.kpi === "sales") ? "sales" : pool.length ? "revenue" : null;
  if (!kpi) {
    state.target = null;
  } else {
    const chosen = pool.filter((r) => r.kpi === kpi);
    const sum = (pick) => chosen.reduce((total, r) => total + (num(pick(r)) ?? 0), 0);
    state.target = {
      kpi,
      value: sum((r) => r.value),
      expected: sum((r) => r.pacing?.expected),
    };
  }
  renderTarget();
}

function levelFor(agentState, seconds) {
  const steps = state.config.state_seconds?.[agentState] || [];
  let level = 0;
  for (const step of steps) if (seconds > step) level += 1;
  return level;
}

function renderAgents() {
  const L = state.locale;
  const grid = $("#grid");
  const agents = agentsOnBoard();
  const keep = new Set();
  let previous = null;
  for (const agent of agents) {
    keep.add(agent.agent_id);
    let tile = state.tiles.get(agent.agent_id);
    if (!tile) {
      tile = makeTile(agent.agent_id);
      state.tiles.set(agent.agent_id, tile);
    }
    updateTile(tile, agent, L);
    const wantedPlace = previous ? previous.nextSibling : grid.firstChild;
    if (wantedPlace !== tile.root) grid.insertBefore(tile.root, wantedPlace);
    previous = tile.root;
  }
  for (const [id, tile] of state.tiles) {
    if (!keep.has(id)) {
      tile.root.remove();
      state.tiles.delete(id);
    }
  }
  $("#no-agents").hidden = agents.length > 0 || !state.agents;
  renderCounts(agents);
  tickTimers();
  if (state.openAgent) renderLeadState();
}

function renderCounts(agents) {
  const L = state.locale;
  const counts = { available: 0, on_call: 0, wrap_up: 0, paused: 0, logged_out: 0 };
  for (const agent of agents) counts[agent.state] = (counts[agent.state] || 0) + 1;
  for (const [name, count] of Object.entries(counts)) {
    setText($(`#count-${name}`), L.count(count));
  }
}

function makeTile(agentId) {
  const root = el("button", "tile");
  root.type = "button";
  root.dataset.agent = agentId;
  const head = el("div", "tile-head");
  const name = el("span", "tile-name", agentId);
  const badge = el("span", "tile-sales");
  head.append(name, badge);
  const stateLine = el("div", "tile-state");
  const icon = el("span", "tile-icon");
  icon.setAttribute("aria-hidden", "true");
  const label = el("span", "tile-label");
  stateLine.append(icon, label);
  const timer = el("div", "tile-timer");
  const foot = el("div", "tile-foot");
  const team = el("span", "tile-team");
  const quiet = el("span", "tile-quiet");
  foot.append(team, quiet);
  root.append(head, stateLine, timer, foot);
  return { root, badge, icon, label, timer, team, quiet, agent: null, since: 0, sales: null };
}

function updateTile(tile, agent, L) {
  tile.agent = agent;
  // Time in state counts from the start of the call when on one (as VICIdial does).
  const started = agent.state === "on_call" && agent.call ? agent.call.started_at : agent.since;
  tile.since = Date.parse(started) || serverNow();
  const root = tile.root;
  root.dataset.state = agent.state;
  root.classList.toggle("is-quiet", Boolean(agent.quiet));
  const sales = agent.today?.sales ?? 0;
  if (tile.sales !== null && sales > tile.sales) flash(root);
  tile.sales = sales;
  setText(tile.badge, L.t("sales_badge", { n: L.count(sales), count: sales }));
  tile.badge.classList.toggle("zero", sales === 0);
  setText(tile.icon, STATE_ICONS[agent.state] || "?");
  let label = L.t(`state_${agent.state}`);
  if (agent.state === "paused" && agent.reason) label = `${label} · ${agent.reason}`;
  setText(tile.label, label);
  setText(tile.team, agent.team_id || "");
  setText(tile.quiet, agent.quiet ? `⚠ ${L.t("quiet")}` : "");
  if (agent.quiet && agent.last_event_at) {
    const gone = (serverNow() - Date.parse(agent.last_event_at)) / 1000;
    tile.quiet.title = L.t("quiet_title", { value: L.duration(gone) });
  } else {
    tile.quiet.removeAttribute("title");
  }
}

// A glow on a tile that just sold (Web Animations: no forced layout, nothing left behind).
function flash(node) {
  node.animate(
    [
      { boxShadow: "0 0 0 0.5rem #ffd54a", transform: "scale(1.06)" },
      { boxShadow: "0 0 0 0 transparent", transform: "scale(1)" },
    ],
    { duration: 2500, easing: "ease-out" },
  );
}

function tickTimers() {
  const now = serverNow();
  for (const tile of state.tiles.values()) {
    const agent = tile.agent;
    if (!agent) continue;
    const seconds = (now - tile.since) / 1000;
    setText(tile.timer, agent.state === "logged_out" ? "" : state.locale.clock(seconds));
    const level = String(levelFor(agent.state, seconds));
    if (tile.root.dataset.level !== level) tile.root.dataset.level = level;
  }
}

// -- Leaderboards: one per team, from the stream's leaderboard event --------------------

function renderLeaderboards() {
  const L = state.locale;
  const host = $("#leaders");
  const kpi = state.leaderKpi;
  const panels = [];
  for (const [team, rows] of state.leaderboards) {
    const panel = el("section", "leader-panel");
    panel.dataset.team = team;
    // On a TV, each team's leaderboard is a screen of the playlist: one panel at a time.
    panel.hidden = state.step?.team !== undefined && state.step.team !== team;
    const title = el("h2", "leader-title", team ? L.t("team", { team }) : L.t("all_teams"));
    const list = el("ol", "leader-list");
    if (!rows.length) list.append(el("li", "leader-empty", L.t("no_ranking")));
    for (const row of rows) {
      const item = el("li", "leader-row");
      item.dataset.agent = row.agent_id;
      item.append(el("span", "leader-rank", L.count(row.rank)));
      item.append(rankArrow(row, L));
      item.append(el("span", "leader-agent", row.agent_id));
      item.append(el("span", "leader-value", L.kpi(kpi, row.value)));
      list.append(item);
    }
    panel.append(title, list);
    panels.push(panel);
  }
  host.replaceChildren(...panels);
  host.dataset.count = String(panels.filter((p) => !p.hidden).length);
}

// -- Contests: the running ones of the board's teams, from the stream's contests event ---

function onBoard(contest) {
  return !askedTeams.length || (contest.team_ids || []).some((t) => askedTeams.includes(t));
}

function takeContests(contests) {
  const shown = contests.filter(onBoard);
  // A contest whose winner was announced never comes back, whatever a late answer says.
  const running = shown.filter(
    (c) => c.status === "running" && !state.contestsEnded.includes(c.contest_id),
  );
  const ids = new Set(running.map((c) => c.contest_id));
  // Ended since the last event (or sent as ended): its winner once, read when it ends.
  for (const contest of shown) {
    if (contest.status === "ended") announceWinner(contest);
  }
  for (const id of state.contestsSeen.keys()) {
    if (!ids.has(id) && !shown.some((c) => c.contest_id === id)) {
      readEnded(id);
    }
  }
  state.contestsSeen = new Map(running.map((c) => [c.contest_id, c]));
  state.contests = running;
  renderContests();
}

async function readEnded(id) {
  try {
    const contest = await getJson(`/v1/contests/${encodeURIComponent(id)}`);
    if (contest.status === "ended") announceWinner(contest);
  } catch (_) {
    /* deleted, or no longer readable by this key: nothing to announce */
  }
}

function announceWinner(contest) {
  if (state.contestsEnded.includes(contest.contest_id)) return;
  state.contestsEnded.push(contest.contest_id);
  if (state.contestsEnded.length > ENDED_CONTESTS_MAX) state.contestsEnded.shift();
  if (!contest.winners || !contest.winners.length) return;
  state.winnerQueue.push(contest);
  if (state.winnerQueue.length > 3) state.winnerQueue.shift();
  if (!state.winnerShown) nextWinner();
}

function competitor(row, L) {
  return row.agent_id || L.t("team", { team: row.team_id || "" });
}

function nextWinner() {
  const banner = $("#contest-winner");
  const contest = state.winnerQueue.shift();
  if (!contest) {
    state.winnerShown = null;
    banner.hidden = true;
    return;
  }
  state.winnerShown = contest;
  renderWinner();
  banner.hidden = false;
  clearTimeout(state.winnerTimer);
  state.winnerTimer = setTimeout(nextWinner, WINNER_MS);
}

function renderWinner() {
  const contest = state.winnerShown;
  if (!contest) return;
  const L = state.locale;
  const who = contest.winners.map((w) => competitor(w, L)).join(L.t("contest_tie"));
  setText($("#winner-title"), L.t("contest_winner_title"));
  setText($("#winner-text"), L.t("contest_winner", { who, name: contest.name }));
  setText($("#winner-value"), L.kpi(contest.kpi, contest.winners[0].value));
  setText($("#winner-prize"), contest.prize ? L.t("contest_prize", { prize: contest.prize }) : "");
}

function renderContests() {
  const L = state.locale;
  const host = $("#contests");
  const cards = state.contests.map((contest) => {
    const card = el("article", "contest");
    card.dataset.contest = String(contest.contest_id);
    const head = el("header", "contest-head");
    head.append(el("h2", "contest-name", contest.name));
    head.append(el("span", "contest-left"));
    const kpiKey = contest.order === "asc" ? "contest_kpi_asc" : "contest_kpi";
    card.append(head, el("p", "contest-kpi", L.t(kpiKey, { kpi: L.kpiName(contest.kpi) })));
    const list = el("ol", "contest-list");
    const rows = (contest.standings || []).slice(0, CONTEST_ROWS);
    if (!rows.length) list.append(el("li", "leader-empty", L.t("contest_nobody")));
    for (const row of rows) {
      const item = el("li", "contest-row");
      item.dataset.rank = String(row.rank);
      item.append(el("span", "leader-rank", L.count(row.rank)));
      item.append(el("span", "contest-who", competitor(row, L)));
      item.append(el("span", "leader-value", L.kpi(contest.kpi, row.value)));
      list.append(item);
    }
    card.append(list);
    if (contest.prize) card.append(el("p", "contest-prize", L.t("contest_prize", { prize: contest.prize })));
    return card;
  });
  host.replaceChildren(...cards);
  $("#no-contests").hidden = cards.length > 0;
  $("#tab-contests").hidden = cards.length === 0;
  tickContests();
}

// Time left counts down between events from each contest's end.
function tickContests() {
  const L = state.locale;
  const now = serverNow();
  for (const card of document.querySelectorAll("#contests .contest")) {
    const contest = state.contestsSeen.get(Number(card.dataset.contest));
    if (!contest) continue;
    const left = (Date.parse(contest.ends_at) - now) / 1000;
    setText(
      $(".contest-left", card),
      left > 0 ? L.t("contest_left", { value: L.clock(left) }) : L.t("contest_ended"),
    );
  }
}

function rankArrow(row, L) {
  const change = row.rank_change;
  let symbol = "★";
  let cls = "new";
  let label = L.t("rank_new");
  if (change !== null && change !== undefined) {
    if (change > 0) {
      symbol = `▲${change}`;
      cls = "up";
      label = L.t("rank_up", { n: change });
    } else if (change < 0) {
      symbol = `▼${-change}`;
      cls = "down";
      label = L.t("rank_down", { n: -change });
    } else {
      symbol = "＝";
      cls = "same";
      label = L.t("rank_same");
    }
  }
  const arrow = el("span", `leader-move ${cls}`, symbol);
  arrow.title = label;
  arrow.setAttribute("aria-label", label);
  return arrow;
}

// -- Pace chart -------------------------------------------------------------------------

function renderPace() {
  const L = state.locale;
  const host = $("#pace-chart");
  const missing = !state.pace;
  $("#pace-missing").hidden = !missing || !state.everOpen;
  if (missing) {
    host.replaceChildren();
    return;
  }
  renderPaceChart(host, state.pace, {
    now: currentLocalHour(),
    labels: { today: L.t("today"), yesterday: L.t("yesterday"), needed: L.t("needed") },
    count: (v) => L.count(v),
  });
}

// -- Celebrations -----------------------------------------------------------------------

function celebrate(sale) {
  if (!sale || !sale.order_id || state.seenSet.has(sale.order_id)) return;
  state.seenSet.add(sale.order_id);
  state.seenSales.push(sale.order_id);
  if (state.seenSales.length > SEEN_SALES_MAX) state.seenSet.delete(state.seenSales.shift());
  if (askedTeams.length && sale.team_id && !askedTeams.includes(sale.team_id)) return;
  state.saleQueue.push(sale);
  if (state.saleQueue.length > SALE_QUEUE_MAX) state.saleQueue.shift();
  const tile = state.tiles.get(sale.agent_id);
  if (tile) flash(tile.root);
  if (!state.celebrating) nextCelebration();
}

function nextCelebration() {
  const banner = $("#celebration");
  const sale = state.saleQueue.shift();
  if (!sale) {
    state.celebrating = false;
    banner.hidden = true;
    return;
  }
  state.celebrating = true;
  const L = state.locale;
  setText($("#sale-title"), L.t("sale_banner"));
  setText($("#sale-amount"), L.money(sale.amount, true));
  setText($("#sale-agent"), L.t("sale_by", { agent: sale.agent_id, team: sale.team_id || "" }));
  setText($("#sale-queue"), state.saleQueue.length ? `+${state.saleQueue.length}` : "");
  banner.hidden = false;
  $(".celebration-inner", banner).animate(
    [
      { transform: "scale(0.4)", opacity: 0 },
      { transform: "scale(1)", opacity: 1 },
    ],
    { duration: 600, easing: "cubic-bezier(0.2, 1.6, 0.4, 1)" },
  );
  if (state.sound) chime();
  const shown = state.saleQueue.length ? CELEBRATE_BUSY_MS : CELEBRATE_MS;
  clearTimeout(state.saleTimer);
  state.saleTimer = setTimeout(nextCelebration, shown);
}

let audio = null;
function chime() {
  try {
    audio = audio || new AudioContext();
    const start = audio.currentTime;
    for (const [i, freq] of [523.25, 659.25, 783.99].entries()) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, start + i * 0.12);
      gain.gain.exponentialRampToValueAtTime(0.25, start + i * 0.12 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + i * 0.12 + 0.4);
      osc.connect(gain).connect(audio.destination);
      osc.start(start + i * 0.12);
      osc.stop(start + i * 0.12 + 0.45);
    }
  } catch (_) {
    /* no audio device: the banner is enough */
  }
}

// -- Freshness and stale warning --------------------------------------------------------

function staleReason() {
  const L = state.locale;
  if (state.refusal) return null; // the notice says more
  if (state.streamState !== "open") {
    return state.everOpen ? L.t("stale_stream") : null;
  }
  const silent = Date.now() - state.lastWordAt;
  if (silent > SILENCE_STALE_MS) return L.t("stale_quiet", { value: L.duration(silent / 1000) });
  const lag = state.status?.lag_status;
  if (lag && lag !== "ok") return L.t("stale_lag", { status: lag });
  return null;
}

function renderFreshness() {
  const L = state.locale;
  const reason = staleReason();
  const banner = $("#stale");
  banner.hidden = !reason;
  setText($("#stale-text"), reason || "");
  document.body.classList.toggle("is-stale", Boolean(reason) || Boolean(state.refusal));
  const fresh = $("#fresh");
  const last = state.status?.last_commit_at;
  let text;
  if (!state.everOpen) text = L.t("connecting");
  else if (!last) text = L.t("updated_never");
  else {
    const ago = Math.max(0, (serverNow() - Date.parse(last)) / 1000);
    text = L.t("updated_ago", { value: L.duration(ago) });
  }
  setText($("#fresh-text"), text);
  fresh.dataset.state = reason || state.refusal ? "stale" : state.everOpen ? "live" : "connecting";
  setText($("#fresh-badge"), reason || state.refusal ? L.t("stale") : L.t("live"));
}

// -- Access notices ---------------------------------------------------------------------

function showNotice(kind, retryMs) {
  state.refusal = kind;
  const L = state.locale;
  const notice = $("#notice");
  notice.dataset.kind = kind;
  setText($("#notice-title"), L.t(`err_${kind}_title`));
  setText($("#notice-text"), L.t(`err_${kind}`, { what: L.t("err_forbidden_what") }));
  setText($("#notice-retry"), retryMs ? L.t("retry_in", { value: L.duration(retryMs / 1000) }) : "");
  notice.hidden = false;
  renderFreshness();
}

function clearRefusal() {
  state.refusal = null;
  $("#notice").hidden = true;
}

// -- The team lead's view ---------------------------------------------------------------

async function openLead(agentId) {
  state.openAgent = agentId;
  const L = state.locale;
  const drawer = $("#lead");
  drawer.hidden = false;
  setText($("#lead-title"), L.t("lead_view", { agent: agentId }));
  renderLeadState();
  const today = $("#lead-today");
  const targets = $("#lead-targets");
  const diagnosis = $("#lead-diagnosis");
  for (const node of [today, targets, diagnosis]) node.replaceChildren(el("p", "muted", L.t("loading")));
  const search = new URLSearchParams({ period: "today" });
  search.append("agent_id", agentId);
  const [metrics, pacing] = await Promise.allSettled([
    getMetrics(search, LEAD_METRICS),
    getJson("/v1/pacing", new URLSearchParams({ scope: "agent" })),
  ]);
  if (state.openAgent !== agentId) return;
  const row = metrics.status === "fulfilled" ? metrics.value.rows?.[0] || {} : null;
  today.replaceChildren(
    ...(row
      ? LEAD_METRICS.map((key) => {
          const item = el("div", "lead-kpi");
          item.append(el("span", "lead-kpi-name", L.kpiName(key)));
          item.append(el("span", "lead-kpi-value", L.kpi(key, row[key])));
          return item;
        })
      : [el("p", "muted", L.t("unavailable"))]),
  );
  const mine =
    pacing.status === "fulfilled"
      ? (pacing.value.targets || []).filter((t) => t.scope_id === agentId)
      : [];
  if (!mine.length) targets.replaceChildren(el("p", "muted", L.t("lead_no_targets")));
  else {
    targets.replaceChildren(
      ...mine.map((t) => {
        const p = t.pacing || {};
        const item = el("div", `lead-target status-${p.status || "none"}`);
        const line = L.t("lead_target_line", {
          kpi: L.kpiName(t.kpi),
          period: L.t(`period_${t.period}`),
          actual: L.kpi(t.kpi, p.actual),
          target: L.kpi(t.kpi, t.value),
        });
        item.append(el("div", "lead-target-line", line));
        const bar = el("div", "bar small");
        const fill = el("div", "bar-fill");
        fill.style.width = `${Math.min(100, (num(p.attainment) ?? 0) * 100).toFixed(1)}%`;
        bar.append(fill);
        item.append(bar);
        const status = p.status ? L.t(`lead_status_${p.status}`) : "";
        const projection = L.t("lead_projection", { value: L.kpi(t.kpi, p.projection) });
        item.append(el("div", "muted", `${status} · ${projection}`));
        return item;
      }),
    );
  }
  const behind = mine.find((t) => ["behind", "at_risk"].includes(t.pacing?.status));
  if (!behind) {
    diagnosis.replaceChildren(el("p", "muted", L.t("lead_no_diagnosis")));
    return;
  }
  try {
    const found = await getJson(`/v1/targets/${encodeURIComponent(behind.target_id)}/diagnosis`);
    if (state.openAgent !== agentId) return;
    const causes = (found.causes || []).slice(0, 3);
    diagnosis.replaceChildren(
      ...(causes.length
        ? causes.map((c) => {
            const item = el("div", "lead-cause");
            item.append(el("span", "lead-cause-rank", L.count(c.rank)));
            item.append(el("span", "lead-cause-name", L.kpiName(c.cause)));
            if (c.question) item.append(el("p", "lead-cause-question", c.question));
            return item;
          })
        : [el("p", "muted", L.t("lead_no_diagnosis"))]),
    );
  } catch (_) {
    diagnosis.replaceChildren(el("p", "muted", L.t("unavailable")));
  }
}

function renderLeadState() {
  const tile = state.tiles.get(state.openAgent);
  const L = state.locale;
  if (!tile || !tile.agent) {
    setText($("#lead-state"), "");
    return;
  }
  const seconds = (serverNow() - tile.since) / 1000;
  setText(
    $("#lead-state"),
    L.t("lead_state", { state: L.t(`state_${tile.agent.state}`), value: L.clock(seconds) }),
  );
}

function closeLead() {
  state.openAgent = null;
  $("#lead").hidden = true;
}

// -- Chrome: language, theme, screens, rotation ----------------------------------------

function applyLanguage() {
  state.locale = new Locale(state.lang, state.config.currency || "CNY", state.config.timezone);
  const L = state.locale;
  document.documentElement.lang = state.lang;
  document.title = L.t("title");
  for (const node of document.querySelectorAll("[data-i18n]")) {
    setText(node, L.t(node.dataset.i18n));
  }
  setText(
    $("#scope"),
    askedTeams.length ? askedTeams.map((t) => L.t("team", { team: t })).join(" · ") : L.t("all_teams"),
  );
  const kpiSelect = $("#kpi");
  for (const option of kpiSelect.options) setText(option, L.kpiName(option.value));
  setText($("#theme-button"), state.theme === "dark" ? L.t("theme_light") : L.t("theme_dark"));
  setText($("#sound-button"), state.sound ? `♪ ${L.t("sound_on")}` : `♪̸ ${L.t("sound_off")}`);
  $("#sound-button").setAttribute("aria-pressed", String(state.sound));
  setText($("#rotate-button"), state.rotating ? `⟳ ${L.t("rotate_on")}` : `⟳ ${L.t("rotate_off")}`);
  $("#lang").value = state.lang;
  for (const tile of state.tiles.values()) if (tile.agent) updateTile(tile, tile.agent, L);
  renderFloor();
  renderCounts(agentsOnBoard());
  renderLeaderboards();
  renderContests();
  renderWinner();
  renderPace();
  renderFreshness();
  if (state.refusal) showNotice(state.refusal);
}

function applyTheme() {
  document.documentElement.dataset.theme = state.theme === "light" ? "light" : "dark";
}

function showScreen(name, step = { screen: name }) {
  state.screen = name;
  state.step = step;
  document.body.dataset.step = step.team !== undefined ? `${name}:${step.team}` : name;
  renderLeaderboards();
  for (const screen of SCREENS) {
    $(`#screen-${screen}`).hidden = screen !== name;
    const tab = $(`#tab-${screen}`);
    tab.classList.toggle("active", screen === name);
    tab.setAttribute("aria-selected", String(screen === name));
  }
  if (name === "pace") renderPace();
}

// The playlist as it stands: screens with nothing to show are left out, and each team
// with a ranking is a leaderboard screen of its own.
function playlist() {
  const steps = [];
  for (const [screen, seconds] of PLAYLIST) {
    const dwell = (seconds / 30) * state.rotateSeconds * 1000;
    if (screen === "leaders") {
      for (const [team, rows] of state.leaderboards) {
        if (rows.length) steps.push({ screen, team, dwell });
      }
    } else if (screen === "floor" || hasContent(screen)) {
      steps.push({ screen, dwell });
    }
  }
  return steps;
}

function hasContent(screen) {
  if (screen === "agents") return agentsOnBoard().length > 0;
  if (screen === "pace") return Boolean(state.pace);
  if (screen === "contests") return state.contests.length > 0;
  return true;
}

function nextStep() {
  const steps = playlist();
  const current = state.step || { screen: state.screen };
  const at = steps.findIndex((s) => s.screen === current.screen && s.team === current.team);
  if (at >= 0) return steps[(at + 1) % steps.length];
  // The current screen left the playlist: the first one after its place.
  const order = PLAYLIST.map(([screen]) => screen);
  const after = steps.find((s) => order.indexOf(s.screen) > order.indexOf(current.screen));
  return after || steps[0];
}

function advance() {
  const step = nextStep();
  showScreen(step.screen, step);
  clearTimeout(state.rotateTimer);
  state.rotateTimer = setTimeout(advance, step.dwell);
}

function setRotation(on) {
  state.rotating = on && state.rotateSeconds > 0;
  clearTimeout(state.rotateTimer);
  if (state.rotating) {
    const first = playlist().find((s) => s.screen === state.screen);
    state.rotateTimer = setTimeout(advance, first ? first.dwell : 0);
  } else if (state.step?.team !== undefined) {
    showScreen(state.screen);
  }
  document.body.classList.toggle("tv", state.rotating);
  document.documentElement.classList.toggle("tv", state.rotating);
}

function wire() {
  $("#tabs").addEventListener("click", (event) => {
    const tab = event.target.closest("[data-screen]");
    if (!tab) return;
    setRotation(false);
    applyLanguage();
    showScreen(tab.dataset.screen);
  });
  $("#grid").addEventListener("click", (event) => {
    const tile = event.target.closest(".tile");
    if (tile) openLead(tile.dataset.agent);
  });
  $("#leaders").addEventListener("click", (event) => {
    const row = event.target.closest(".leader-row");
    if (row) openLead(row.dataset.agent);
  });
  $("#lead-close").addEventListener("click", closeLead);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeLead();
  });
  $("#lang").addEventListener("change", (event) => {
    state.lang = pickLanguage(event.target.value);
    prefs.lang = state.lang;
    savePrefs(prefs);
    applyLanguage();
  });
  $("#theme-button").addEventListener("click", () => {
    state.theme = state.theme === "dark" ? "light" : "dark";
    prefs.theme = state.theme;
    savePrefs(prefs);
    applyTheme();
    applyLanguage();
  });
  $("#sound-button").addEventListener("click", () => {
    state.sound = !state.sound;
    prefs.sound = state.sound;
    savePrefs(prefs);
    if (state.sound) chime();
    applyLanguage();
  });
  $("#rotate-button").addEventListener("click", () => {
    if (!state.rotateSeconds) state.rotateSeconds = 30;
    setRotation(!state.rotating);
    applyLanguage();
  });
  $("#kpi").addEventListener("change", (event) => {
    state.leaderKpi = event.target.value;
    prefs.kpi = state.leaderKpi;
    savePrefs(prefs);
    state.leaderboards = new Map();
    renderLeaderboards();
    stream.restart();
  });
  // A new board link opened over this one: take its key without a reload.
  window.addEventListener("hashchange", () => {
    const key = takeKey();
    if (key !== state.key) {
      state.key = key;
      clearRefusal();
      stream.restart();
    }
  });
}

function fillKpiSelect() {
  const select = $("#kpi");
  for (const key of LEADER_KPIS) {
    const option = document.createElement("option");
    option.value = key;
    select.append(option);
  }
  select.value = state.leaderKpi;
  const lang = $("#lang");
  for (const code of LANGUAGES) {
    const option = document.createElement("option");
    option.value = code;
    option.textContent = { "zh-CN": "简体中文", "zh-TW": "繁體中文", en: "English" }[code];
    lang.append(option);
  }
}

// Reads for a server whose stream lacks the agents or pace events.
async function fallbackReads() {
  if (state.streamState !== "open" || state.fallbackBusy) return;
  const now = Date.now();
  const since = now - (state.openedAt || now);
  state.fallbackBusy = true;
  try {
    if (since > FALLBACK_AFTER_OPEN_MS && now - (state.agentsAt || 0) > AGENTS_FALLBACK_MS) {
      try {
        const body = await getJson("/v1/agents/now", teamQuery(new URLSearchParams()));
        handleEvent("agents", body);
        state.agentsAt = Date.now();
      } catch (_) {
        state.agentsAt = Date.now() + 4 * AGENTS_FALLBACK_MS; // not offered: ask seldom
      }
    }
    if (since > FALLBACK_AFTER_OPEN_MS && now - (state.paceAt || 0) > PACE_FALLBACK_MS) {
      state.paceAt = Date.now();
      try {
        handleEvent("pace", await getJson("/v1/pace/hourly", teamQuery(new URLSearchParams())));
      } catch (_) {
        handleEvent("pace", await paceFromMetrics());
      }
      state.paceAt = Date.now();
    }
  } catch (_) {
    /* shown as missing; asked again later */
  } finally {
    state.fallbackBusy = false;
  }
}

// Sales per local hour today and yesterday from /v1/metrics; no needed pace without
// the API's pace route.
async function paceFromMetrics() {
  const read = async (period) => {
    const search = teamQuery(new URLSearchParams({ period, granularity: "hour" }));
    return (await getMetrics(search, ["sales"])).rows || [];
  };
  const [today, yesterday] = await Promise.all([read("today"), read("yesterday")]);
  const hourOf = (bucket) => Number(String(bucket).slice(11, 13));
  const hours = new Map();
  const slot = (hour) => {
    if (!hours.has(hour)) {
      hours.set(hour, { hour, sales: 0, yesterday_sales: 0, needed_sales: null });
    }
    return hours.get(hour);
  };
  for (const row of today) slot(hourOf(row.bucket)).sales = Number(row.sales) || 0;
  for (const row of yesterday) slot(hourOf(row.bucket)).yesterday_sales = Number(row.sales) || 0;
  return { hours: [...hours.values()], target: null };
}

function tick() {
  fallbackReads();
  tickTimers();
  tickContests();
  renderFreshness();
  if (state.openAgent) renderLeadState();
  const L = state.locale;
  setText($("#clock"), L.time.format(new Date(serverNow())));
}

async function start() {
  fillKpiSelect();
  applyTheme();
  state.locale = new Locale(state.lang, "CNY");
  try {
    const response = await fetch("/board/config.json", { cache: "no-store" });
    if (response.ok) state.config = await response.json();
  } catch (_) {
    /* defaults above; the stream's own retries report an unreachable server */
  }
  wire();
  applyLanguage();
  showScreen(state.screen);
  setRotation(state.rotateSeconds > 0);
  applyLanguage();
  stream.start();
  tick();
  setInterval(tick, 500);
  refreshTargets();
}

// For the browser tests: feed events through the same path the stream uses.
window.callboardBoard = { handle: handleEvent, state, stream };

start();
