// Server-Sent Events read with fetch(), because EventSource cannot send the Authorization
// header. Reconnects by itself with exponential backoff (1 s doubling to 30 s, with jitter
// so that a floor's TVs do not all come back in the same instant), sending Last-Event-ID.

export class HttpError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

const MIN_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30000;

export class Stream {
  // url(): the stream's address, asked again on every connection (its views may change);
  // headers(): request headers; onEvent(name, data, id); onState(state, detail) with state
  // one of "connecting", "open", "retrying", "refused".
  constructor({ url, headers, onEvent, onState }) {
    this.url = url;
    this.headers = headers;
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastEventId = null;
    this.backoff = MIN_BACKOFF_MS;
    this.controller = null;
    this.timer = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  restart() {
    this.stop();
    this.backoff = MIN_BACKOFF_MS;
    this.start();
  }

  retryLater(reason) {
    if (this.stopped) return;
    const wait = Math.round(this.backoff * (0.75 + Math.random() * 0.5));
    this.backoff = Math.min(MAX_BACKOFF_MS, this.backoff * 2);
    this.onState("retrying", { reason, wait });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), wait);
  }

  async connect() {
    if (this.stopped) return;
    const controller = new AbortController();
    this.controller = controller;
    this.onState("connecting");
    const headers = { Accept: "text/event-stream", ...this.headers() };
    if (this.lastEventId !== null) headers["Last-Event-ID"] = this.lastEventId;
    let response;
    try {
      response = await fetch(this.url(), { headers, signal: controller.signal, cache: "no-store" });
    } catch (error) {
      if (!controller.signal.aborted) this.retryLater(error);
      return;
    }
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch (_) {
        body = null;
      }
      const error = new HttpError(response.status, body);
      // A key or a request the server refuses will not get better by itself soon; the
      // page decides (and shows why), the stream waits longer before asking again.
      if ([401, 403, 422].includes(response.status)) {
        this.onState("refused", error);
        return;
      }
      this.retryLater(error);
      return;
    }
    this.backoff = MIN_BACKOFF_MS;
    this.onState("open");
    try {
      await this.read(response.body, controller);
    } catch (error) {
      if (controller.signal.aborted) return;
      this.retryLater(error);
      return;
    }
    if (!controller.signal.aborted && !this.stopped) this.retryLater(new Error("stream ended"));
  }

  async read(body, controller) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (controller.signal.aborted) return;
          this.dispatch(block);
        }
      }
    } finally {
      reader.releaseLock();
    }
  }

  dispatch(block) {
    let name = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    if (id !== null) this.lastEventId = id;
    if (!data.length) {
      this.onEvent("keepalive", null, id);
      return;
    }
    let parsed;
    try {
      parsed = JSON.parse(data.join("\n"));
    } catch (_) {
      return;
    }
    this.onEvent(name, parsed, id);
  }
}
