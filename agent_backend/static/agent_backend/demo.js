// The demo page: log in, open the session's stream with AgentSSEClient, run
// the simulated agent, answer its permission requests (edit the arguments,
// remember, deny with a message, stop the run, approve several at once).
// No framework, no build.

const config = JSON.parse(document.getElementById("demo-config").textContent);
const { AgentSSEClient } = await import(config.clientUrl);

const KEYS = {
  access: "agentDemo.access",
  refresh: "agentDemo.refresh",
  username: "agentDemo.username",
  session: "agentDemo.session",
};
const TIMELINE_LIMIT = 400;
const STATE_LABELS = {
  idle: "offline",
  connecting: "connecting…",
  open: "connected",
  reconnecting: "reconnecting…",
  closed: "disconnected",
};

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"),
  whoami: $("whoami"),
  logout: $("logout"),
  login: $("login"),
  loginForm: $("login-form"),
  loginError: $("login-error"),
  app: $("app"),
  sessionId: $("session-id"),
  shareLink: $("share-link"),
  newSession: $("new-session"),
  run: $("run"),
  scenario: $("scenario"),
  runMessage: $("run-message"),
  tools: $("tools"),
  timeline: $("timeline"),
  eventCount: $("event-count"),
  dialog: $("permission-dialog"),
  permQueue: $("permission-queue"),
  permQueueCount: $("permission-queue-count"),
  permList: $("permission-list"),
  approveAll: $("permission-approve-all"),
  permTool: $("permission-tool"),
  permCall: $("permission-call"),
  permDescription: $("permission-description"),
  permArguments: $("permission-arguments"),
  permArgumentsError: $("permission-arguments-error"),
  permUndo: $("permission-undo"),
  permCountdown: $("permission-countdown"),
  permReason: $("permission-reason"),
  permError: $("permission-error"),
  approve: $("permission-approve"),
  deny: $("permission-deny"),
  abort: $("permission-abort"),
};

let client = null;
let sessionId = null;
let runGoing = false;
// The connection was lost (not just renewed with a new token) since the last `connected`.
let dropped = false;
let starting = false;
let eventCount = 0;
// Client clock minus server clock (ms), from the server's own timestamps.
let serverOffset = 0;
// The request shown in the dialog's editor, and each request's edited
// arguments (the editor's text) by request id.
let selectedId = null;
const drafts = new Map();
// Request ids answered from this tab (their permission_cleared is no news).
const answeredHere = new Set();
let answering = false;
let countdownTimer = null;
let loginWaiters = [];

// -- tokens and API calls ---------------------------------------------------------

async function postJSON(url, body, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  return { status: response.status, ok: response.ok, data };
}

function errorMessage(result) {
  return result.data?.error?.message || `HTTP ${result.status}`;
}

/** AgentSSEClient's getToken: refresh, or ask the person to log in again. */
async function getToken() {
  const refresh = sessionStorage.getItem(KEYS.refresh);
  if (refresh) {
    const result = await postJSON(`${config.apiBase}/auth/token/refresh/`, { refresh });
    if (result.ok && result.data.access) {
      sessionStorage.setItem(KEYS.access, result.data.access);
      if (result.data.refresh) sessionStorage.setItem(KEYS.refresh, result.data.refresh);
      return result.data.access;
    }
  }
  return waitForLogin("Your session has ended: please log in again.");
}

function currentToken() {
  return client?.token || sessionStorage.getItem(KEYS.access);
}

async function authorizedPost(url, body) {
  let result = await postJSON(url, body, currentToken());
  if (result.status === 401) {
    const token = await getToken();
    client?.setToken(token);
    result = await postJSON(url, body, token);
  }
  return result;
}

// -- logging in -------------------------------------------------------------------

function showLogin(message = "") {
  ui.login.hidden = false;
  ui.app.hidden = true;
  ui.logout.hidden = true;
  ui.whoami.hidden = true;
  ui.loginError.textContent = message;
  ui.loginForm.elements.password.focus();
}

function waitForLogin(message) {
  showLogin(message);
  return new Promise((resolve) => loginWaiters.push(resolve));
}

ui.loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = ui.loginForm.elements;
  const username = form.username.value.trim();
  ui.loginError.textContent = "";
  let result;
  try {
    result = await postJSON(`${config.apiBase}/auth/token/`, {
      username,
      password: form.password.value,
    });
  } catch (error) {
    ui.loginError.textContent = `The server cannot be reached (${error.message}).`;
    return;
  }
  if (!result.ok) {
    ui.loginError.textContent =
      result.status === 401 ? "Wrong username or password." : errorMessage(result);
    return;
  }
  form.password.value = "";
  sessionStorage.setItem(KEYS.access, result.data.access);
  sessionStorage.setItem(KEYS.refresh, result.data.refresh);
  sessionStorage.setItem(KEYS.username, username);
  showApp();
  const waiters = loginWaiters;
  loginWaiters = [];
  if (waiters.length) waiters.forEach((resolve) => resolve(result.data.access));
  else await start();
});

ui.logout.addEventListener("click", () => {
  closeDialog();
  client?.close();
  client = null;
  Object.values(KEYS).forEach((key) => sessionStorage.removeItem(key));
  history.replaceState(null, "", location.pathname);
  renderState("idle");
  showLogin();
});

function showApp() {
  ui.login.hidden = true;
  ui.app.hidden = false;
  ui.logout.hidden = false;
  ui.whoami.hidden = false;
  ui.whoami.textContent = sessionStorage.getItem(KEYS.username) || "";
}

// -- the session and its stream ---------------------------------------------------

async function createSession() {
  const result = await authorizedPost(`${config.apiBase}/sse/sessions/`, { title: "Demo" });
  if (!result.ok) throw new Error(`Cannot create a session: ${errorMessage(result)}`);
  return result.data.data.session_id;
}

function useSession(id) {
  sessionId = id;
  sessionStorage.setItem(KEYS.session, id);
  const url = new URL(location.href);
  url.searchParams.set("session", id);
  history.replaceState(null, "", url);
  ui.sessionId.textContent = id;
  ui.shareLink.href = url.href;
}

async function start() {
  if (!sessionStorage.getItem(KEYS.access)) {
    showLogin();
    return;
  }
  showApp();
  const wanted =
    new URL(location.href).searchParams.get("session") || sessionStorage.getItem(KEYS.session);
  try {
    useSession(wanted || (await createSession()));
  } catch (error) {
    ui.runMessage.textContent = error.message;
    return;
  }
  connect();
}

function connect() {
  const previous = client;
  const current = new AgentSSEClient(sessionId, {
    apiBase: config.apiBase,
    token: sessionStorage.getItem(KEYS.access),
    getToken,
  });
  client = current;
  previous?.close();
  resetRun();
  window.demoClient = client; // for the console
  client.onStateChange((state, detail) => {
    if (client === current) onStateChange(state, detail);
  });
  client.on("*", addToTimeline);
  client.on("connected", onConnected);
  client.on("replay_gap", onReplayGap);
  client.on("heartbeat", syncClock);
  client.on("run_started", onRunStarted);
  client.on("run_finished", onRunFinished);
  client.on("tool_status", onToolStatus);
  client.on("tool_result", onToolResult);
  client.on("permission_request", renderPermissions);
  client.on("permission_cleared", onPermissionCleared);
  client.connect();
}

async function onStateChange(state, detail) {
  if (state === "reconnecting" && detail.delay !== undefined) dropped = true;
  renderState(state);
  addLocalEntry(state, detail);
  updateRunButton();
  if (state !== "closed" || detail.reason === "client") return;
  if (detail.reason === "session_not_found") {
    // The session is gone (another database, another user): start a new one.
    try {
      useSession(await createSession());
      connect();
    } catch (error) {
      ui.runMessage.textContent = error.message;
    }
  } else if (["unauthorized", "no_token", "token_expired"].includes(detail.reason)) {
    sessionStorage.removeItem(KEYS.access);
    await waitForLogin("Please log in again.");
    connect();
  }
}

function renderState(state) {
  ui.status.dataset.state = state;
  ui.status.textContent = STATE_LABELS[state] || state;
}

function onConnected(message) {
  syncClock(message);
  if (dropped) {
    // Back after a lost connection: a run in the server's process may have
    // died with it.  If it still runs, "Run agent" answers 409 and says so.
    dropped = false;
    runGoing = false;
    updateRunButton();
  }
}

function onReplayGap() {
  runGoing = false;
  updateRunButton();
  ui.runMessage.textContent = "Some events were lost (server restart?): what follows is live.";
}

function syncClock(message) {
  if (typeof message.timestamp === "number") serverOffset = Date.now() - message.timestamp;
}

ui.newSession.addEventListener("click", async () => {
  try {
    useSession(await createSession());
  } catch (error) {
    ui.runMessage.textContent = error.message;
    return;
  }
  ui.timeline.replaceChildren();
  eventCount = 0;
  ui.eventCount.textContent = "";
  connect();
});

// -- runs and tools ---------------------------------------------------------------

function resetRun() {
  runGoing = false;
  starting = false;
  closeDialog();
  ui.runMessage.textContent = "";
  updateRunButton();
}

function updateRunButton() {
  ui.run.disabled = !client || client.state !== "open" || runGoing || starting;
}

ui.run.addEventListener("click", async () => {
  starting = true;
  updateRunButton();
  ui.runMessage.textContent = "Starting…";
  try {
    const result = await authorizedPost(config.runUrl, {
      session_id: sessionId,
      scenario: ui.scenario.value,
    });
    if (result.ok) ui.runMessage.textContent = "Running";
    else if (result.status === 409) {
      runGoing = true;
      ui.runMessage.textContent = "A run is still going in this session.";
    } else ui.runMessage.textContent = errorMessage(result);
  } catch (error) {
    ui.runMessage.textContent = `The run did not start (${error.message}).`;
  } finally {
    starting = false;
    updateRunButton();
  }
});

function onRunStarted(message) {
  runGoing = true;
  updateRunButton();
  ui.runMessage.textContent = "Running";
  ui.tools.replaceChildren();
  for (const name of message.data.tools || []) toolRow(name);
}

function onRunFinished(message) {
  runGoing = false;
  updateRunButton();
  const { outcome, reason } = message.data;
  if (outcome === "aborted") ui.runMessage.textContent = `Run stopped${reason ? `: ${reason}` : ""}`;
  else {
    ui.runMessage.textContent =
      outcome === "completed" ? "Run finished" : `Run finished (${outcome}${reason ? `: ${reason}` : ""})`;
  }
}

function toolRow(name) {
  ui.tools.querySelector(".placeholder")?.remove();
  let row = [...ui.tools.children].find((li) => li.dataset.tool === name);
  if (!row) {
    row = document.createElement("li");
    row.dataset.tool = name;
    row.innerHTML =
      '<div class="tool-head"><code class="tool-name"></code><span class="chip">pending</span></div>' +
      '<progress max="1" value="0"></progress><div class="tool-detail muted"></div>';
    row.querySelector(".tool-name").textContent = name;
    ui.tools.append(row);
  }
  return row;
}

function onToolStatus(message) {
  const { tool_name: name, status, progress, message: text } = message.data;
  const row = toolRow(name);
  row.dataset.status = status;
  row.querySelector(".chip").textContent = status.replace(/_/g, " ");
  if (typeof progress === "number") row.querySelector("progress").value = progress;
  row.querySelector(".tool-detail").textContent = text || "";
}

function onToolResult(message) {
  const { tool_name: name, success, result, error } = message.data;
  const row = toolRow(name);
  row.dataset.result = success ? "success" : "failure";
  row.querySelector(".chip").textContent = success ? "succeeded" : "failed";
  if (success) row.querySelector("progress").value = 1;
  row.querySelector(".tool-detail").textContent = success ? compact(result) : error || "failed";
}

// -- the timeline -----------------------------------------------------------------

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

function formatTime(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function compact(value) {
  const text = JSON.stringify(value);
  return text && text.length > 140 ? `${text.slice(0, 139)}…` : text ?? "";
}

function describe(message) {
  const d = message.data || {};
  switch (message.type) {
    case "connected":
      return d.last_event_id ? `stream open, resuming after ${d.last_event_id}` : "stream open";
    case "heartbeat":
      return "heartbeat";
    case "tool_status": {
      const percent =
        d.status === "running" && typeof d.progress === "number"
          ? ` ${Math.round(d.progress * 100)}%`
          : "";
      return `${d.tool_name}: ${d.status}${percent}${d.message ? ` — ${d.message}` : ""}`;
    }
    case "tool_result": {
      if (!d.success) {
        return `${d.tool_name}: failed — ${d.error || ""}${d.aborted ? " (run stopped)" : ""}`;
      }
      return `${d.tool_name}: success ${compact(d.result)}${d.edited ? " (with your edits)" : ""}`;
    }
    case "permission_request":
      return `${d.tool_name} asks for permission ${compact(d.arguments)}`;
    case "permission_cleared":
      return `${d.status}${d.reason ? ` — ${d.reason}` : ""}`;
    case "replay_gap":
      return `events after ${d.missed_from} were dropped from the buffer: resynchronise`;
    case "token_expired":
      return "token expired: reconnecting with a new one";
    case "run_started":
      return `run ${d.run_id}: ${(d.tools || []).join(", ")}`;
    case "run_finished":
      return `run ${d.run_id}: ${d.outcome}`;
    default:
      return compact(d);
  }
}

function appendEntry(li) {
  ui.timeline.prepend(li);
  while (ui.timeline.children.length > TIMELINE_LIMIT) ui.timeline.lastElementChild.remove();
}

function addToTimeline(message) {
  const li = document.createElement("li");
  li.className = "event";
  li.dataset.type = message.type;
  if (message.id) li.dataset.id = message.id;
  const time = document.createElement("time");
  time.textContent = formatTime(message.timestamp ?? Date.now());
  if (message.timestamp) time.dateTime = new Date(message.timestamp).toISOString();
  const type = document.createElement("span");
  type.className = "type";
  type.textContent = message.type;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = describe(message);
  li.append(time, type, text);
  appendEntry(li);
  eventCount += 1;
  ui.eventCount.textContent = `(${eventCount})`;
}

function addLocalEntry(state, detail) {
  if (state === "open" || state === "idle") return;
  const li = document.createElement("li");
  li.className = "local";
  li.dataset.state = state;
  const time = document.createElement("time");
  time.textContent = formatTime(Date.now());
  const text = document.createElement("span");
  text.className = "text";
  let line = STATE_LABELS[state] || state;
  if (detail.delay) line += ` (attempt ${detail.attempt}, in ${(detail.delay / 1000).toFixed(1)} s)`;
  if (detail.reason) line += ` (${detail.reason})`;
  text.textContent = line;
  li.append(time, text);
  appendEntry(li);
}

// -- the permission dialog --------------------------------------------------------
//
// One request: its tool, description, arguments in a JSON editor, countdown,
// and the answer (approve once / for this session / always for me, deny with a
// message, stop the run).  Several: a list above it, each with its own
// actions, and "Approve all" (one batch POST).  The message and the remember
// choice apply to whichever answer is given; edits belong to their request.

function expiresAt(request) {
  return request.expires_at_ms ?? Date.parse(request.expires_at);
}

function isExpired(request) {
  return expiresAt(request) - (Date.now() - serverOffset) <= 0;
}

function pending() {
  return client?.pendingPermissions ?? [];
}

function selectedRequest() {
  return pending().find((p) => p.request_id === selectedId) ?? null;
}

function pretty(value) {
  return JSON.stringify(value ?? {}, null, 2);
}

// JSON with sorted keys: an edit that only reorders keys is no edit.
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** A request's draft: {error} if it cannot be sent, else {edits} (undefined: as asked). */
function parseDraft(request) {
  const text = drafts.get(request.request_id);
  if (text === undefined) return { edits: undefined };
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { error: `Not valid JSON: ${error.message}` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { error: "The arguments must be a JSON object: { ... }." };
  }
  return { edits: canonical(value) === canonical(request.arguments ?? {}) ? undefined : value };
}

function renderPermissions() {
  const waiting = pending();
  if (!waiting.length) {
    closeDialog();
    return;
  }
  for (const id of drafts.keys()) {
    if (!waiting.some((p) => p.request_id === id)) drafts.delete(id);
  }
  if (!ui.dialog.open) resetAnswer();
  if (!waiting.some((p) => p.request_id === selectedId)) select(waiting[0]);
  renderQueue(waiting);
  updateActions();
  if (!ui.dialog.open) ui.dialog.showModal();
  if (countdownTimer === null) countdownTimer = setInterval(tick, 250);
  tick();
}

/** Show `request` in the editor. */
function select(request) {
  selectedId = request.request_id;
  ui.dialog.dataset.requestId = request.request_id;
  ui.permTool.textContent = request.tool_name;
  ui.permCall.textContent = request.tool_call_id || "";
  ui.permDescription.textContent = request.description || "";
  // defaultValue: what was asked (the element's text); value: the draft.
  ui.permArguments.defaultValue = pretty(request.arguments);
  ui.permArguments.value = drafts.get(request.request_id) ?? pretty(request.arguments);
  ui.permError.textContent = "";
}

function renderQueue(waiting) {
  ui.permQueue.hidden = waiting.length < 2;
  if (waiting.length < 2) {
    ui.permList.replaceChildren();
    return;
  }
  ui.permQueueCount.textContent = `${waiting.length} requests waiting`;
  const rows = waiting.map((request) => {
    let li = ui.permList.querySelector(`li[data-request-id="${CSS.escape(request.request_id)}"]`);
    if (!li) {
      li = document.createElement("li");
      li.dataset.requestId = request.request_id;
      li.innerHTML =
        '<button type="button" class="pick" data-action="select" title="Show and edit">' +
        '<code class="tool-name"></code> <span class="muted"></span></button>' +
        '<span class="left muted"></span>' +
        '<button type="button" data-action="deny">Deny</button>' +
        '<button type="button" data-action="approve" class="primary">Approve</button>';
      li.querySelector(".tool-name").textContent = request.tool_name;
      li.querySelector(".pick .muted").textContent = compact(request.arguments);
    }
    return li;
  });
  ui.permList.replaceChildren(...rows);
  for (const li of rows) {
    li.setAttribute("aria-current", String(li.dataset.requestId === selectedId));
  }
}

function updateActions() {
  const request = selectedRequest();
  if (!request) return;
  const draft = parseDraft(request);
  const expired = isExpired(request);
  ui.permArgumentsError.textContent = draft.error || "";
  ui.permArguments.setAttribute("aria-invalid", String(Boolean(draft.error)));
  ui.permArguments.dataset.edited = String(Boolean(draft.edits));
  ui.permUndo.hidden = !drafts.has(request.request_id);
  ui.approve.textContent = draft.edits ? "Approve with edits" : "Approve";
  ui.approve.disabled = answering || expired || Boolean(draft.error);
  ui.deny.disabled = ui.abort.disabled = answering || expired;
  const waiting = pending();
  for (const li of ui.permList.children) {
    const item = waiting.find((p) => p.request_id === li.dataset.requestId);
    if (!item) continue;
    const gone = answering || isExpired(item);
    li.querySelector('[data-action="approve"]').disabled = gone || Boolean(parseDraft(item).error);
    li.querySelector('[data-action="deny"]').disabled = gone;
  }
  const open = waiting.filter((p) => !isExpired(p));
  const broken = open.find((p) => parseDraft(p).error);
  ui.approveAll.disabled = answering || !open.length || Boolean(broken);
  ui.approveAll.textContent = `Approve all (${open.length})`;
  ui.approveAll.title = broken ? `Fix the arguments of ${broken.tool_name} first` : "";
}

function remaining(request) {
  const ms = expiresAt(request) - (Date.now() - serverOffset);
  return ms > 0 ? `${Math.ceil(ms / 1000)} s` : "expired";
}

function tick() {
  const request = selectedRequest();
  if (!request) {
    // Normally the server's permission_cleared removes it; if that was lost,
    // the client stops listing the request a little after its expiry.
    renderPermissions();
    return;
  }
  ui.permCountdown.textContent = remaining(request);
  const waiting = pending();
  for (const li of ui.permList.children) {
    const item = waiting.find((p) => p.request_id === li.dataset.requestId);
    if (item) li.querySelector(".left").textContent = remaining(item);
  }
  updateActions();
}

function setAnswering(value) {
  answering = value;
  updateActions();
}

/** The message and remember choice back to their defaults. */
function resetAnswer() {
  ui.permReason.value = "";
  ui.permError.textContent = "";
  ui.dialog.querySelector('input[name="remember"][value=""]').checked = true;
}

function closeDialog() {
  clearInterval(countdownTimer);
  countdownTimer = null;
  selectedId = null;
  drafts.clear();
  ui.permList.replaceChildren();
  delete ui.dialog.dataset.requestId;
  if (ui.dialog.open) ui.dialog.close();
}

function onPermissionCleared(message) {
  const { request_id: requestId, status } = message.data;
  if (requestId === selectedId && !answeredHere.has(requestId)) {
    // Not answered here: expired, cancelled, or answered in another tab.
    ui.runMessage.textContent = `The request for ${ui.permTool.textContent}: ${status}`;
  }
  renderPermissions();
}

/** The answer the form holds, for `request`. */
function answerFor(request, approved, abort = false) {
  const fallback = abort ? "Stopped in the demo" : `${approved ? "Approved" : "Denied"} in the demo`;
  const reason = ui.permReason.value.trim() || fallback;
  const answer = { requestId: request.request_id, approved, reason };
  if (approved) {
    const { edits } = parseDraft(request);
    if (edits !== undefined) answer.arguments = edits;
    const remember = ui.dialog.querySelector('input[name="remember"]:checked')?.value;
    if (remember) answer.remember = remember;
  }
  if (abort) answer.abort = true;
  return answer;
}

function isPending(requestId) {
  return pending().some((p) => p.request_id === requestId);
}

async function send(answers, post) {
  answers.forEach((a) => answeredHere.add(a.requestId));
  setAnswering(true);
  ui.permError.textContent = "";
  try {
    return await post();
  } catch (error) {
    ui.permError.textContent = `Not sent: ${error.message}`;
    return null;
  } finally {
    setAnswering(false);
  }
}

async function answerOne(request, approved, abort = false) {
  if (approved && parseDraft(request).error) return;
  const { requestId, ...answer } = answerFor(request, approved, abort);
  const result = await send([{ requestId }], () => client.respondToPermission(requestId, answer));
  if (!result) return;
  const why = result.error?.message || result.error?.code;
  if (result.success) resetAnswer();
  else if (isPending(requestId)) ui.permError.textContent = why;
  else ui.runMessage.textContent = `Not recorded: ${why}`;
  renderPermissions();
}

async function answerAll() {
  const open = pending().filter((p) => !isExpired(p));
  if (!open.length || open.some((p) => parseDraft(p).error)) return;
  const answers = open.map((p) => answerFor(p, true));
  const result = await send(answers, () => client.respondToPermissions(answers));
  if (!result) return;
  if (!result.success) {
    ui.permError.textContent = result.error?.message || result.error?.code;
  } else {
    const failed = result.data.results.filter((r) => r.status !== 200);
    const why = (r) => `${r.request_id}: ${r.error?.message || r.error?.code || r.status}`;
    if (failed.length) ui.permError.textContent = `Not recorded: ${failed.map(why).join("; ")}`;
    else resetAnswer();
  }
  renderPermissions();
}

ui.permArguments.addEventListener("input", () => {
  const request = selectedRequest();
  if (!request) return;
  drafts.set(request.request_id, ui.permArguments.value);
  updateActions();
});
ui.permUndo.addEventListener("click", () => {
  const request = selectedRequest();
  if (!request) return;
  drafts.delete(request.request_id);
  ui.permArguments.value = pretty(request.arguments);
  updateActions();
  ui.permArguments.focus();
});
ui.permList.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  const request = pending().find((p) => p.request_id === button?.closest("li")?.dataset.requestId);
  if (!request) return;
  if (button.dataset.action === "select") {
    select(request);
    renderQueue(pending());
    updateActions();
  } else answerOne(request, button.dataset.action === "approve");
});
ui.approve.addEventListener("click", () => {
  const request = selectedRequest();
  if (request) answerOne(request, true);
});
ui.deny.addEventListener("click", () => {
  const request = selectedRequest();
  if (request) answerOne(request, false);
});
ui.abort.addEventListener("click", () => {
  const request = selectedRequest();
  if (request) answerOne(request, false, true);
});
ui.approveAll.addEventListener("click", answerAll);
// A request needs an answer: Escape does not dismiss it.
ui.dialog.addEventListener("cancel", (event) => event.preventDefault());

await start();
