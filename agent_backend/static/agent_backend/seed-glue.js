// Glue around the product note's JavaScript (static/agent_backend/seed/*.js,
// unchanged).  It logs in, creates a session, fills in the note's two
// placeholders, defines showPermissionDialog (which the note leaves to the
// page) and copies console output into the page.  Everything here is inside
// this function: the note's code declares sessionId, token, eventSource and
// approvePermission at the top level.
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("demo-config").textContent);
  const basicClientUrl = document.currentScript.dataset.basicClient;
  const $ = (id) => document.getElementById(id);
  const PLACEHOLDERS = { session: "'your-session-id'", token: "'your-auth-token'" };

  // -- console.log, shown in the page ---------------------------------------------

  function format(value) {
    if (typeof value === "string") return value;
    if (value instanceof Date) return value.toISOString();
    if (value instanceof Event) return `[${value.type} event]`;
    try {
      return JSON.stringify(value);
    } catch (error) {
      return String(value);
    }
  }

  for (const level of ["log", "warn", "error"]) {
    const original = console[level].bind(console);
    console[level] = (...args) => {
      original(...args);
      const line = document.createElement("div");
      line.className = level;
      line.textContent = args.map(format).join(" ");
      $("console").append(line);
    };
  }

  // -- what the note calls but leaves to the page ---------------------------------

  window.showPermissionDialog = function showPermissionDialog(request) {
    const dialog = $("permission-dialog");
    dialog.dataset.requestId = request.request_id;
    $("permission-tool").textContent = request.tool_name;
    $("permission-arguments").textContent = JSON.stringify(request.arguments, null, 2);
    if (!dialog.open) dialog.showModal();
  };

  function answer(approved) {
    $("permission-dialog").close();
    // The note's own function, defined by its basic client example.
    window.approvePermission(approved, approved ? "用户同意" : "用户拒绝");
  }

  // -- logging in and a session ------------------------------------------------------

  async function postJSON(url, body, token) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
    return { ok: response.ok, status: response.status, data: await response.json() };
  }

  function login() {
    $("login").hidden = false;
    return new Promise((resolve) => {
      $("login-form").addEventListener("submit", async (event) => {
        event.preventDefault();
        const form = event.target.elements;
        const result = await postJSON(`${config.apiBase}/auth/token/`, {
          username: form.username.value,
          password: form.password.value,
        });
        if (!result.ok) {
          $("login-error").textContent = "Wrong username or password.";
          return;
        }
        $("login").hidden = true;
        resolve(result.data.access);
      });
    });
  }

  // -- running the note's code ------------------------------------------------------

  async function runBasicClient(sessionId, token) {
    const source = await (await fetch(basicClientUrl)).text();
    for (const placeholder of Object.values(PLACEHOLDERS)) {
      if (source.split(placeholder).length !== 2) {
        throw new Error(`the note's example should contain ${placeholder} once`);
      }
    }
    const script = document.createElement("script");
    script.textContent = source
      .replace(PLACEHOLDERS.session, () => JSON.stringify(sessionId))
      .replace(PLACEHOLDERS.token, () => JSON.stringify(token));
    document.body.append(script);
  }

  async function start() {
    const token = sessionStorage.getItem("agentDemo.access") || (await login());
    const created = await postJSON(`${config.apiBase}/sse/sessions/`, { title: "Seed page" }, token);
    if (!created.ok) {
      console.error("Cannot create a session:", created.data);
      return;
    }
    const sessionId = created.data.data.session_id;
    $("session-id").textContent = sessionId;
    $("app").hidden = false;

    await runBasicClient(sessionId, token);

    // The note's SSEClient class; its handleMessage is a stub ("处理消息").
    const client = new SSEClient(sessionId, token);
    client.handleMessage = (data) => console.log("SSEClient:", data.type);
    client.connect();
    window.noteClient = client;

    await checkSSEHealth(sessionId, token);

    $("health").addEventListener("click", () => checkSSEHealth(sessionId, token));
    $("run").addEventListener("click", async () => {
      const result = await postJSON(config.runUrl, { session_id: sessionId }, token);
      console.log("Run agent:", result.status);
    });
    document.body.dataset.ready = "true";
  }

  $("permission-approve").addEventListener("click", () => answer(true));
  $("permission-deny").addEventListener("click", () => answer(false));
  $("permission-dialog").addEventListener("cancel", (event) => event.preventDefault());
  window.addEventListener("DOMContentLoaded", () => {
    start().catch((error) => console.error("Seed page:", error.message));
  });
})();
