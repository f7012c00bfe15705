// The demo page: log in, open the session's stream with AgentSSEClient, run
// the simulated agent, answer its permission request.  No framework, no build.

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
  runMessage: $("run-message"),
  tools: $("tools"),
  timeline: $("timeline"),
  eventCount: $("event-count"),
  dialog: $("permission-dialog"),
  permTool: $("permission-tool"),
  permDescription: $("permission-description"),
  permArguments: $("permission-arguments"),
  permCountdown: $("permission-countdown"),
  permReason: $("permission-reason"),
  permError: $("permission-error"),
  approve: $("permission-approve"),
  deny: $("permission-deny"),
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
let shownRequest = null;
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
  client.on("permission_request", showNextPermission);
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
    const result = await authorizedPost(config.runUrl, { session_id: sessionId });
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
  ui.runMessage.textContent =
    outcome === "completed" ? "Run finished" : `Run finished (${outcome}${reason ? `: ${reason}` : ""})`;
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
    case "tool_result":
      return `${d.tool_name}: ${d.success ? `success ${compact(d.result)}` : `failed — ${d.error || ""}`}`;
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

function expiresAt(request) {
  return request.expires_at_ms ?? Date.parse(request.expires_at);
}

function showNextPermission() {
  const next = client?.pendingPermissions[0];
  if (!next) {
    closeDialog();
    return;
  }
  if (shownRequest?.request_id === next.request_id) return;
  shownRequest = next;
  ui.dialog.dataset.requestId = next.request_id;
  ui.permTool.textContent = next.tool_name;
  ui.permDescription.textContent = next.description || "";
  ui.permArguments.textContent = JSON.stringify(next.arguments, null, 2);
  ui.permReason.value = "";
  ui.permError.textContent = "";
  setAnswering(false);
  if (!ui.dialog.open) ui.dialog.showModal();
  clearInterval(countdownTimer);
  tick();
  countdownTimer = setInterval(tick, 250);
}

function tick() {
  if (!shownRequest) return;
  const remaining = expiresAt(shownRequest) - (Date.now() - serverOffset);
  if (remaining > 0) {
    ui.permCountdown.textContent = `${Math.ceil(remaining / 1000)} s`;
    return;
  }
  ui.permCountdown.textContent = "expired";
  ui.approve.disabled = ui.deny.disabled = true;
  // Normally the server's permission_cleared closes it; if that was lost,
  // the client stops listing the request a little after its expiry.
  if (!client.pendingPermissions.some((p) => p.request_id === shownRequest.request_id)) {
    closeDialog();
    showNextPermission();
  }
}

function setAnswering(answering) {
  ui.approve.disabled = ui.deny.disabled = answering;
}

function closeDialog() {
  clearInterval(countdownTimer);
  countdownTimer = null;
  shownRequest = null;
  delete ui.dialog.dataset.requestId;
  if (ui.dialog.open) ui.dialog.close();
}

function onPermissionCleared(message) {
  const { request_id: requestId, status } = message.data;
  if (shownRequest?.request_id === requestId) {
    // Not answered here: expired, cancelled, or answered in another tab.
    ui.runMessage.textContent = `The request for ${shownRequest.tool_name}: ${status}`;
    closeDialog();
  }
  showNextPermission();
}

async function answer(approved) {
  const request = shownRequest;
  if (!request) return;
  setAnswering(true);
  ui.permError.textContent = "";
  const reason =
    ui.permReason.value.trim() || (approved ? "Approved in the demo" : "Denied in the demo");
  let result;
  try {
    result = await client.approvePermission(approved, reason, request.request_id);
  } catch (error) {
    ui.permError.textContent = `Not sent: ${error.message}`;
    setAnswering(false);
    return;
  }
  if (!result.success) {
    const code = result.error?.code || "";
    if (client.pendingPermissions.some((p) => p.request_id === request.request_id)) {
      ui.permError.textContent = result.error?.message || code;
      setAnswering(false);
      return;
    }
    ui.runMessage.textContent = `Not recorded: ${result.error?.message || code}`;
  }
  if (shownRequest === request) closeDialog();
  showNextPermission();
}

ui.approve.addEventListener("click", () => answer(true));
ui.deny.addEventListener("click", () => answer(false));
// A request needs an answer: Escape does not dismiss it.
ui.dialog.addEventListener("cancel", (event) => event.preventDefault());

await start();
