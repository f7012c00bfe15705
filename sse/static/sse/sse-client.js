// Generated from sse-client.mjs by `python -m tests.test_browser_client`:
// edit the module, not this file.  Defines window.AgentSSEClient.
(function (root) {
"use strict";

/*
 * AgentSSEClient: the browser side of the agent event stream.
 *
 *   GET  {apiBase}/sse/events/{session_id}?token=...&last_event_id=...
 *   POST {apiBase}/sse/permission-response/{session_id}
 *   GET  {apiBase}/sse/health/{session_id}   (only to tell a 401 from a network error)
 *
 * The native EventSource resumes with Last-Event-ID only on its own retries,
 * keeps the token it was opened with, and gives up for good on any non-200
 * answer.  This client closes the EventSource on every error and reconnects
 * by hand: with ?last_event_id= (so nothing is missed and nothing repeats),
 * exponential backoff with jitter, and a fresh token from getToken() when the
 * server says the old one expired.  No dependencies, no build step.
 *
 * sse-client.js is this file wrapped as a plain script (window.AgentSSEClient);
 * tests/test_browser_client.py checks that the two do not drift.
 */

// Where the project mounted the sse URLs: the page's {% sse_config %}
// (<script type="application/json" id="sse-config">), else the note's path.
const DEFAULT_API_BASE = "/agent_backend/api";

const DEFAULTS = {
  apiBase: null,
  // How the stream is opened: "ticket" (a single-use ticket fetched with the
  // token before each connect: no token in any URL or log), "token" (the
  // token in ?token=, as the note's code does) or "cookie" (the Django
  // session cookie). Default: "ticket" with a token or getToken, else "cookie".
  auth: null,
  // Cross-origin cookie streams: send the cookie (EventSource withCredentials).
  withCredentials: false,
  token: null,
  getToken: null,
  lastEventId: null,
  initialDelay: 1000,
  maxDelay: 30000,
  factor: 2,
  // A delay is drawn from [delay * (1 - jitter), delay]: clients dropped by
  // the same restart do not all come back in the same millisecond.
  jitter: 0.5,
  maxAttempts: Infinity,
  // Heartbeat intervals without any message before the stream is presumed
  // dead (a proxy that silently drops idle connections).
  heartbeatGrace: 2.5,
  // A token that expires sooner than this is replaced before connecting.
  tokenLeewayMs: 5000,
  onStateChange: null,
  EventSource: null,
  fetch: null,
};

// Request ids remembered as settled, so a late replay cannot show them again.
const SETTLED_MEMORY = 1000;
// A request this long past its expiry is no longer pending, even if its
// permission_cleared never arrived (lost with a server's memory broker).
const EXPIRED_GRACE_MS = 10000;

// Answers after which a request is no longer pending: recorded, already
// decided (409, by another tab or a rule) or expired (410).
const SETTLED_STATUSES = new Set([200, 409, 410]);

/** The POST body of one answer; only the fields given go out. */
function answerBody(answer, requestId) {
  const { approved, reason = "", arguments: edits, abort, remember } = answer || {};
  if (typeof approved !== "boolean") {
    throw new TypeError(`AgentSSEClient: "approved" must be true or false, not ${approved}`);
  }
  const body = { approved, reason: String(reason ?? "") };
  if (requestId) body.request_id = requestId;
  if (edits !== undefined && edits !== null) body.arguments = edits;
  if (abort) body.abort = true;
  if (remember) body.remember = remember;
  return body;
}

function parseEventId(id) {
  const match = /^(\d{1,20})(?:-(\d{1,20}))?$/.exec(String(id ?? "").trim());
  return match ? [BigInt(match[1]), BigInt(match[2] ?? "0")] : null;
}

/** -1, 0 or 1 as event id `a` is older than, equal to or newer than `b`. */
function compareEventIds(a, b) {
  const x = parseEventId(a);
  const y = parseEventId(b);
  if (!x || !y) return x ? 1 : y ? -1 : 0;
  if (x[0] !== y[0]) return x[0] < y[0] ? -1 : 1;
  if (x[1] !== y[1]) return x[1] < y[1] ? -1 : 1;
  return 0;
}

/** The `exp` of a JWT in milliseconds, or null when it cannot be read. */
function tokenExpiry(token) {
  try {
    const part = String(token).split(".")[1];
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const payload = JSON.parse(atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), "=")));
    return typeof payload.exp === "number" ? payload.exp * 1000 : null;
  } catch (error) {
    return null;
  }
}

function reportError(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else console.error(error);
}

async function isOurError(response, code) {
  try {
    const body = await response.json();
    return body?.success === false && body?.error?.code === code;
  } catch (error) {
    return false;
  }
}

/** The page's {% sse_config %} settings ({} without one). */
function pageConfig() {
  const element = globalThis.document?.getElementById?.("sse-config");
  if (!element) return {};
  try {
    return JSON.parse(element.textContent) || {};
  } catch (error) {
    reportError(error);
    return {};
  }
}

class AgentSSEClient {
  /**
   * new AgentSSEClient(sessionId, token)
   * new AgentSSEClient(sessionId, { token, getToken, lastEventId, apiBase, ... })
   */
  constructor(sessionId, options = {}) {
    if (typeof options === "string") options = { token: options };
    this.options = { ...DEFAULTS, ...options };
    this.options.apiBase ??= pageConfig().apiBase ?? DEFAULT_API_BASE;
    this.options.auth ??= this.options.token || this.options.getToken ? "ticket" : "cookie";
    this.sessionId = sessionId;
    this.token = this.options.token;
    this.lastEventId = this.options.lastEventId;
    this.state = "idle";
    // Why the client is closed: "client" (close()), "unauthorized",
    // "session_not_found", "max_attempts", "misconfigured" (apiBase points
    // at no sse endpoints), ...; null while it runs.
    this.closeReason = null;
    this.attempts = 0;
    this.heartbeatInterval = null;
    this._EventSource = this.options.EventSource || globalThis.EventSource;
    this._fetch = this.options.fetch || globalThis.fetch.bind(globalThis);
    this._handlers = new Map();
    this._stateHandlers = new Set();
    if (typeof this.options.onStateChange === "function") {
      this._stateHandlers.add(this.options.onStateChange);
    }
    this._pending = new Map();
    this._settled = new Set();
    this._source = null;
    this._opened = false;
    this._everOpened = false;
    // Why the next getToken() call happens: "expired" or "unauthorized".
    this._tokenReason = null;
    this._running = false;
    // Bumped on every (re)connect and on close(): callbacks of an older
    // EventSource, timer or token request see a stale generation and stop.
    this._generation = 0;
    this._retryTimer = null;
    this._watchdog = null;
    this._onOnline = () => {
      if (this.state === "reconnecting" && this._retryTimer !== null) this._reconnectNow();
    };
  }

  // -- subscribing --------------------------------------------------------------

  /** Call `handler(message)` for messages of `type` ("*": every message). */
  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this.off(type, handler);
  }

  off(type, handler) {
    this._handlers.get(type)?.delete(handler);
  }

  /** Call `handler(state, detail)` on connecting / open / reconnecting / closed. */
  onStateChange(handler) {
    this._stateHandlers.add(handler);
    return () => this._stateHandlers.delete(handler);
  }

  /** Unanswered permission requests, oldest first (each its `data`). */
  get pendingPermissions() {
    this._pruneExpired();
    return [...this._pending.values()];
  }

  get connected() {
    return this.state === "open";
  }

  // -- connection ---------------------------------------------------------------

  connect() {
    if (this._running) return this;
    this._running = true;
    this.closeReason = null;
    this.attempts = 0;
    this._everOpened = false;
    globalThis.addEventListener?.("online", this._onOnline);
    this._open();
    return this;
  }

  close() {
    this._stop("client");
  }

  /** Use `token` from now on (the open stream keeps going). */
  setToken(token) {
    this.token = token;
  }

  async _open() {
    const generation = ++this._generation;
    this._clearTimers();
    if (this.state !== "reconnecting") {
      this._setState(this._everOpened || this.attempts > 0 ? "reconnecting" : "connecting", {
        attempt: this.attempts,
      });
    }
    let token;
    try {
      token = await this._currentToken();
    } catch (error) {
      if (generation !== this._generation) return;
      reportError(error);
      this._scheduleReconnect();
      return;
    }
    if (generation !== this._generation) return;
    const cookie = this.options.auth === "cookie";
    if (!token && !cookie) {
      this._stop("no_token");
      return;
    }
    const query = [];
    if (this.options.auth === "token") query.push(`token=${encodeURIComponent(token)}`);
    if (this.options.auth === "ticket") {
      const ticket = await this._ticket(token, generation);
      if (ticket === null || generation !== this._generation) return; // refused, retried, or stale
      query.push(`ticket=${encodeURIComponent(ticket)}`);
    }
    if (this.lastEventId) query.push(`last_event_id=${encodeURIComponent(this.lastEventId)}`);
    const url = this._endpoint("events") + (query.length ? `?${query.join("&")}` : "");
    const source = cookie
      ? new this._EventSource(url, { withCredentials: this.options.withCredentials })
      : new this._EventSource(url);
    this._source = source;
    this._opened = false;
    source.onopen = () => {
      if (generation !== this._generation) return;
      this._opened = true;
      this._everOpened = true;
      this._armWatchdog();
      this._setState("open");
    };
    source.onmessage = (event) => {
      if (generation === this._generation) this._receive(event);
    };
    source.onerror = () => {
      if (generation === this._generation) this._failed(token);
    };
  }

  async _failed(token) {
    const generation = ++this._generation;
    const opened = this._opened;
    this._dropSource();
    if (!opened) {
      // EventSource hides the status of a refused stream: ask the health
      // endpoint, which answers 401/404 for the same credentials and session.
      const status = await this._probe(token);
      if (generation !== this._generation) return;
      if (this._refused(status, token)) return;
    }
    this._scheduleReconnect();
  }

  /** Stop on a refusal that retrying cannot mend; true if it stopped. */
  _refused(status, token) {
    // 403: a host whose authentication answers so (session authentication first).
    if (status === 401 || status === 403) {
      if (!this.options.getToken) {
        this._stop("unauthorized");
        return true;
      }
      if (this.token === token) {
        this.token = null;
        this._tokenReason = "unauthorized";
      }
    } else if (status === 404) {
      this._stop("session_not_found");
      return true;
    } else if (status === "misconfigured") {
      reportError(
        new Error(
          `AgentSSEClient: no sse endpoints under apiBase "${this.options.apiBase}": ` +
            "pass the prefix your project mounts sse.urls at, or put {% sse_config %} " +
            "in the page",
        ),
      );
      this._stop("misconfigured");
      return true;
    } else if (status === 400) {
      this._stop("invalid_session_id");
      return true;
    }
    return false;
  }

  async _probe(token) {
    try {
      return await this._status(
        await this._fetch(this._endpoint("health"), this._credentials(token, {})),
      );
    } catch (error) {
      return 0;
    }
  }

  /** A ticket for one stream open; null when refused or failed (handled). */
  async _ticket(token, generation) {
    let response;
    try {
      const base = String(this.options.apiBase).replace(/\/+$/, "");
      response = await this._fetch(
        `${base}/sse/tickets/`,
        this._credentials(token, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ session_id: this.sessionId }),
        }),
      );
      if (response.status === 201) {
        const { ticket } = await response.json();
        if (typeof ticket === "string" && ticket) return ticket;
        reportError(new Error("AgentSSEClient: a 201 from sse/tickets/ without a ticket"));
      }
    } catch (error) {
      response = null; // the network: retried with backoff
    }
    if (generation !== this._generation) return null;
    const status = response === null || response.status === 201 ? 0 : await this._status(response);
    if (generation !== this._generation || this._refused(status, token)) return null;
    this._scheduleReconnect();
    return null;
  }

  /** A response's status; "misconfigured" for a 404 not of the sse app. */
  async _status(response) {
    if (response.status === 404 && !(await isOurError(response, "session_not_found"))) {
      return "misconfigured";
    }
    return response.status;
  }

  /** ``init`` with the token, or with the cookie in "cookie" mode. */
  _credentials(token, init) {
    if (this.options.auth === "cookie") {
      return { ...init, credentials: this.options.withCredentials ? "include" : "same-origin" };
    }
    return { ...init, headers: { ...(init.headers || {}), Authorization: `Bearer ${token}` } };
  }

  _scheduleReconnect() {
    this.attempts += 1;
    if (this.attempts > this.options.maxAttempts) {
      this._stop("max_attempts");
      return;
    }
    const { initialDelay, factor, maxDelay, jitter } = this.options;
    const ceiling = Math.min(maxDelay, initialDelay * factor ** (this.attempts - 1));
    const delay = Math.round(ceiling * (1 - jitter * Math.random()));
    this._clearTimers();
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._open();
    }, delay);
    this._setState("reconnecting", { attempt: this.attempts, delay });
  }

  _reconnectNow() {
    this._dropSource();
    this._open();
  }

  async _currentToken() {
    const { getToken, tokenLeewayMs } = this.options;
    if (getToken) {
      let reason = null;
      if (!this.token) reason = this._tokenReason || "initial";
      else {
        const expiry = tokenExpiry(this.token);
        if (expiry !== null && expiry - Date.now() < tokenLeewayMs) reason = "expired";
      }
      if (reason) {
        this._tokenReason = null;
        this.token = await getToken({ reason, sessionId: this.sessionId });
      }
    }
    return this.token;
  }

  _stop(reason) {
    this._generation += 1;
    this._running = false;
    this._dropSource();
    this._clearTimers();
    globalThis.removeEventListener?.("online", this._onOnline);
    this.closeReason = reason;
    this._setState("closed", { reason });
  }

  _dropSource() {
    if (this._source) {
      this._source.onopen = this._source.onmessage = this._source.onerror = null;
      this._source.close();
      this._source = null;
    }
    this._opened = false;
    clearTimeout(this._watchdog);
    this._watchdog = null;
  }

  _clearTimers() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    clearTimeout(this._watchdog);
    this._watchdog = null;
  }

  _armWatchdog() {
    clearTimeout(this._watchdog);
    const seconds = this.heartbeatInterval || 30;
    const generation = this._generation;
    this._watchdog = setTimeout(() => {
      if (generation === this._generation) this._failed(this.token);
    }, seconds * 1000 * this.options.heartbeatGrace);
  }

  _setState(state, detail = {}) {
    if (state === this.state && state !== "reconnecting") return;
    this.state = state;
    for (const handler of [...this._stateHandlers]) {
      try {
        handler(state, detail);
      } catch (error) {
        reportError(error);
      }
    }
  }

  // -- messages -----------------------------------------------------------------

  _receive(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (error) {
      return;
    }
    if (!message || typeof message !== "object") return;
    this._armWatchdog();
    // event.lastEventId is the last `id:` line of this stream: it moves only
    // with numbered events (heartbeats and backlog messages have none).
    const numbered = Boolean(event.lastEventId) && message.id === event.lastEventId;
    if (numbered) {
      if (this.lastEventId && compareEventIds(message.id, this.lastEventId) <= 0) return;
      this.lastEventId = message.id;
    }
    const data = message.data || {};
    switch (message.type) {
      case "connected":
        this.attempts = 0;
        if (data.heartbeat_interval > 0) {
          this.heartbeatInterval = data.heartbeat_interval;
          this._armWatchdog();
        }
        break;
      case "permission_request":
        if (this._pending.has(data.request_id) || this._settled.has(data.request_id)) return;
        this._pending.set(data.request_id, data);
        break;
      case "permission_cleared":
        this._settle(data.request_id);
        break;
      default:
        break;
    }
    this._dispatch(message);
    if (message.type === "token_expired") this._tokenExpired();
    // The user may no longer read the session: reconnecting would not help.
    if (message.type === "access_revoked") this._stop("access_revoked");
  }

  _tokenExpired() {
    this._dropSource();
    if (this.options.auth === "cookie") {
      this._open(); // the session cookie was renewed, or the server will say no
      return;
    }
    if (!this.options.getToken) {
      this._stop("token_expired");
      return;
    }
    this.token = null;
    this._tokenReason = "expired";
    this._open();
  }

  _pruneExpired() {
    const now = Date.now();
    for (const [id, request] of this._pending) {
      const expiry = request.expires_at_ms ?? Date.parse(request.expires_at);
      if (expiry + EXPIRED_GRACE_MS < now) this._settle(id);
    }
  }

  _settle(requestId) {
    this._pending.delete(requestId);
    this._settled.add(requestId);
    if (this._settled.size > SETTLED_MEMORY) {
      this._settled.delete(this._settled.values().next().value);
    }
  }

  _dispatch(message) {
    const handlers = [
      ...(this._handlers.get(message.type) || []),
      ...(this._handlers.get("*") || []),
    ];
    for (const handler of handlers) {
      try {
        handler(message);
      } catch (error) {
        reportError(error);
      }
    }
  }

  // -- answering permission requests --------------------------------------------

  /**
   * Answer a permission request; without `requestId`, the oldest one this
   * client knows of (pinned, so a request arriving meanwhile is not answered
   * by mistake).  Resolves to the server's JSON answer:
   * {success: true, data: decision} or {success: false, error: {code, message, ...}}.
   */
  async approvePermission(approved, reason = "", requestId = undefined) {
    return this.respondToPermission(requestId, { approved: Boolean(approved), reason });
  }

  /**
   * Answer one request (`requestId` null: the oldest pending one, pinned):
   * `{approved, reason, arguments, abort, remember}`.  `arguments` (approvals)
   * runs the tool with these instead; `abort: true` (denials) stops the whole
   * run; `remember` (approvals) is "session" or "user": later requests for the
   * tool are approved without asking.  Resolves to the server's JSON answer,
   * as approvePermission does.
   */
  async respondToPermission(requestId, answer = {}) {
    const id = requestId ?? this.pendingPermissions[0]?.request_id;
    const { response, result } = await this._answer(answerBody(answer, id));
    // Answered, already decided (409) or expired (410): it is no longer pending.
    if (id && SETTLED_STATUSES.has(response.status)) this._settle(id);
    return result;
  }

  /**
   * Answer several requests in one POST (the server takes 1-50), each
   * `{requestId, approved, reason, arguments, abort, remember}` and each
   * decided on its own.  Resolves to the server's JSON answer:
   * {success: true, data: {results: [{request_id, status, decision | error}]}},
   * in the order given; an empty list resolves so without asking the server.
   */
  async respondToPermissions(answers) {
    const decisions = [...answers].map((answer) => {
      const id = answer?.requestId ?? answer?.request_id;
      if (!id) throw new TypeError("AgentSSEClient: each answer of a batch needs its requestId");
      return answerBody(answer, id);
    });
    if (!decisions.length) return { success: true, data: { results: [] } };
    const { response, result } = await this._answer({ decisions });
    if (response.ok) {
      for (const item of result?.data?.results || []) {
        if (item?.request_id && SETTLED_STATUSES.has(item.status)) this._settle(item.request_id);
      }
    }
    return result;
  }

  async _answer(body) {
    const response = await this._authorizedFetch(this._endpoint("permission-response"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    let result;
    try {
      result = await response.json();
    } catch (error) {
      result = {
        success: false,
        error: { code: "bad_response", message: `HTTP ${response.status}` },
      };
    }
    return { response, result };
  }

  async _authorizedFetch(url, init) {
    const send = (token) =>
      this._fetch(url, {
        ...init,
        headers: { ...(init.headers || {}), Authorization: `Bearer ${token}` },
      });
    let response = await send(await this._currentToken());
    if (response.status === 401 && this.options.getToken) {
      this.token = null;
      this._tokenReason = "unauthorized";
      response = await send(await this._currentToken());
    }
    return response;
  }

  _endpoint(name) {
    const base = String(this.options.apiBase).replace(/\/+$/, "");
    return `${base}/sse/${name}/${encodeURIComponent(this.sessionId)}`;
  }
}

AgentSSEClient.compareEventIds = compareEventIds;
AgentSSEClient.tokenExpiry = tokenExpiry;

root.AgentSSEClient = AgentSSEClient;
})(typeof window !== "undefined" ? window : globalThis);
