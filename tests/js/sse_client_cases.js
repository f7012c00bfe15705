// Cases for AgentSSEClient run in Chromium against a scripted EventSource and
// fetch (tests/test_browser_client.py runs each one; a case throws to fail).
(function () {
  "use strict";

  class FakeEventSource {
    constructor(url, init) {
      this.url = url;
      this.init = init;
      this.readyState = 0;
      this.closed = false;
      this.lastEventId = "";
      FakeEventSource.instances.push(this);
    }

    open() {
      this.readyState = 1;
      this.onopen?.({ type: "open" });
    }

    // `id`: the frame's `id:` line, as the server sends for published events.
    send(message, id) {
      if (id !== undefined) this.lastEventId = id;
      this.onmessage?.({ data: JSON.stringify(message), lastEventId: this.lastEventId });
    }

    fail() {
      this.readyState = this.readyState === 1 ? 0 : 2;
      this.onerror?.({ type: "error" });
    }

    close() {
      this.closed = true;
      this.readyState = 2;
    }
  }
  FakeEventSource.instances = [];

  function message(type, data = {}, id = undefined) {
    const m = { type, session_id: "s1", data, timestamp: Date.now() };
    if (id !== undefined) m.id = id;
    return m;
  }

  function published(es, type, data, id) {
    es.send(message(type, data, id), id);
  }

  function assert(condition, what) {
    if (!condition) throw new Error(`assertion failed: ${what}`);
  }

  function equal(actual, expected, what) {
    const a = JSON.stringify(actual);
    const e = JSON.stringify(expected);
    if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
  }

  async function waitFor(predicate, what, timeout = 3000) {
    const deadline = Date.now() + timeout;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // fetch answering `status(url, init)` (a number or {status, body}).
  function fakeFetch(answer) {
    const calls = [];
    const fetch = async (url, init = {}) => {
      calls.push({ url, init, body: init.body ? JSON.parse(init.body) : null });
      let reply = answer(url, init, calls.length);
      if (typeof reply === "number") reply = { status: reply, body: {} };
      return {
        status: reply.status,
        ok: reply.status >= 200 && reply.status < 300,
        json: async () => reply.body,
      };
    };
    return { fetch, calls };
  }

  function jwt(expSeconds) {
    const encode = (value) =>
      btoa(JSON.stringify(value)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    return `${encode({ alg: "HS256" })}.${encode({ exp: expSeconds })}.signature`;
  }

  function make(options = {}) {
    FakeEventSource.instances = [];
    const states = [];
    const client = new window.AgentSSEClient("s1", {
      token: "t0",
      // The cases below read the token in the URL; the ticket and cookie
      // modes have cases of their own.
      auth: "token",
      EventSource: FakeEventSource,
      initialDelay: 10,
      maxDelay: 40,
      onStateChange: (state, detail) => states.push({ state, ...detail }),
      ...options,
    });
    const sources = FakeEventSource.instances;
    const last = () => sources[sources.length - 1];
    const nextSource = async (count) => {
      await waitFor(() => sources.length >= count, `EventSource #${count}`);
      return sources[count - 1];
    };
    return { client, states, sources, last, nextSource };
  }

  const cases = {
    async resumesFromTheLastIdWithCappedJitteredBackoff() {
      const probe = fakeFetch(() => 502);
      const { client, states, nextSource } = make({ fetch: probe.fetch, jitter: 0.5 });
      client.connect();
      const first = await nextSource(1);
      equal(first.url, "/agent_backend/api/sse/events/s1?token=t0", "first URL");
      equal(client.state, "connecting", "state before open");
      first.open();
      first.send(message("connected", { heartbeat_interval: 30 }));
      published(first, "tool_status", { n: 1 }, "5-0");
      published(first, "tool_status", { n: 2 }, "6-0");
      equal(client.lastEventId, "6-0", "lastEventId");
      first.fail(); // a drop after open: reconnect by hand, no probe
      assert(first.closed, "the broken EventSource is closed, not left retrying");
      for (let n = 2; n <= 7; n += 1) {
        const source = await nextSource(n);
        equal(source.url, "/agent_backend/api/sse/events/s1?token=t0&last_event_id=6-0", "resume URL");
        if (n < 7) source.fail(); // refused: the probe says 502, back off
        else source.open();
      }
      const waits = states.filter((s) => s.state === "reconnecting" && s.delay !== undefined);
      equal(waits.map((s) => s.attempt), [1, 2, 3, 4, 5, 6], "attempts");
      for (const { attempt, delay } of waits) {
        const ceiling = Math.min(40, 10 * 2 ** (attempt - 1));
        assert(delay >= ceiling * 0.5 && delay <= ceiling, `delay ${delay} of attempt ${attempt}`);
      }
      equal(probe.calls.length, 5, "a probe per refused connection");
      equal(probe.calls[0].url, "/agent_backend/api/sse/health/s1", "probe URL");
      equal(client.state, "open", "state after reconnecting");
      FakeEventSource.instances[6].send(message("connected", { heartbeat_interval: 30 }));
      equal(client.attempts, 0, "attempts reset by `connected`");
      equal(
        states.map((s) => s.state).filter((s, i, all) => s !== all[i - 1]),
        ["connecting", "open", "reconnecting", "open"],
        "state changes",
      );
      client.close();
    },

    async dropsDuplicatesAndDedupesPermissionRequests() {
      const { client, nextSource } = make();
      const seen = [];
      const requests = [];
      client.on("*", (m) => seen.push(m.id ?? m.type));
      client.on("permission_request", (m) => requests.push(m.data.request_id));
      client.connect();
      const es = await nextSource(1);
      es.open();
      const request = { request_id: "r1", tool_name: "write_file", arguments: {} };
      published(es, "permission_request", request, "7-0");
      published(es, "tool_status", {}, "7-0"); // a repeated id
      published(es, "tool_status", {}, "6-9"); // an older one
      // Pending requests come again on every connect, without an id line.
      es.send(message("permission_request", request, "7-0"));
      equal(requests, ["r1"], "permission_request handled once");
      equal(client.pendingPermissions.map((p) => p.request_id), ["r1"], "pending");
      published(es, "permission_cleared", { request_id: "r1", status: "approved" }, "8-0");
      equal(client.pendingPermissions, [], "cleared");
      es.send(message("permission_request", request, "7-0"));
      equal(requests, ["r1"], "a settled request does not come back");
      equal(seen, ["7-0", "8-0"], "messages dispatched");
      client.close();
    },

    async longExpiredRequestsAreNoLongerPending() {
      const { client, nextSource } = make();
      client.connect();
      const es = await nextSource(1);
      es.open();
      const now = Date.now();
      published(es, "permission_request", { request_id: "old", expires_at_ms: now - 11000 }, "1-0");
      published(es, "permission_request", { request_id: "late", expires_at_ms: now - 1000 }, "2-0");
      published(es, "permission_request", {
        request_id: "iso",
        expires_at: new Date(now + 60000).toISOString(),
      }, "3-0");
      // Just expired: the server's permission_cleared is on its way.
      equal(client.pendingPermissions.map((p) => p.request_id), ["late", "iso"], "pending");
      client.close();
    },

    async tokenExpiredFetchesAFreshTokenAndResumes() {
      const reasons = [];
      const { client, states, nextSource } = make({
        getToken: async ({ reason }) => {
          reasons.push(reason);
          return `fresh${reasons.length}`;
        },
      });
      client.connect();
      const first = await nextSource(1);
      first.open();
      published(first, "tool_status", {}, "9-1");
      first.send(message("token_expired"));
      const second = await nextSource(2);
      assert(first.closed, "old stream closed");
      equal(reasons, ["expired"], "getToken reasons");
      equal(second.url, "/agent_backend/api/sse/events/s1?token=fresh1&last_event_id=9-1", "URL");
      assert(!states.some((s) => s.delay !== undefined), "no backoff for an expired token");
      second.open();
      equal(client.state, "open", "state");
      client.close();
    },

    async unauthorizedAsksForANewToken() {
      const reasons = [];
      const probe = fakeFetch(() => 401);
      const { client, nextSource } = make({
        fetch: probe.fetch,
        getToken: async ({ reason }) => {
          reasons.push(reason);
          return "renewed";
        },
      });
      client.connect();
      (await nextSource(1)).fail(); // refused before opening
      const second = await nextSource(2);
      equal(probe.calls[0].init.headers.Authorization, "Bearer t0", "probe token");
      equal(reasons, ["unauthorized"], "getToken reasons");
      equal(second.url, "/agent_backend/api/sse/events/s1?token=renewed", "URL");
      client.close();
    },

    async unauthorizedWithoutGetTokenCloses() {
      const { client, sources, states, nextSource } = make({ fetch: fakeFetch(() => 401).fetch });
      client.connect();
      (await nextSource(1)).fail();
      await waitFor(() => client.state === "closed", "closed");
      equal(client.closeReason, "unauthorized", "reason");
      equal(states[states.length - 1], { state: "closed", reason: "unauthorized" }, "last state");
      await sleep(60);
      equal(sources.length, 1, "no reconnect");
    },

    async unknownSessionCloses() {
      const notFound = { status: 404, body: { success: false, error: { code: "session_not_found" } } };
      const { client, nextSource } = make({ fetch: fakeFetch(() => notFound).fetch });
      client.connect();
      (await nextSource(1)).fail();
      await waitFor(() => client.state === "closed", "closed");
      equal(client.closeReason, "session_not_found", "reason");
    },

    async withATokenEachConnectSpendsAFreshTicket() {
      let issued = 0;
      const api = fakeFetch((url) =>
        url.endsWith("/sse/tickets/")
          ? { status: 201, body: { ticket: `tk${++issued}`, expires_at: "2030-01-01T00:00:00Z" } }
          : 502,
      );
      const { client, nextSource } = make({ fetch: api.fetch, auth: undefined });
      client.connect();
      const first = await nextSource(1);
      equal(first.url, "/agent_backend/api/sse/events/s1?ticket=tk1", "first URL");
      const asked = api.calls.filter((call) => call.url.endsWith("/sse/tickets/"));
      equal(asked[0].init.method, "POST", "method");
      equal(asked[0].init.headers.Authorization, "Bearer t0", "the token goes in a header");
      equal(asked[0].body, { session_id: "s1" }, "body");
      first.open();
      published(first, "tool_status", {}, "7-0");
      first.fail();
      const second = await nextSource(2);
      equal(second.url, "/agent_backend/api/sse/events/s1?ticket=tk2&last_event_id=7-0", "again");
      client.close();
    },

    async aTicketRefusedForTheSessionCloses() {
      const notFound = { status: 404, body: { success: false, error: { code: "session_not_found" } } };
      const { client, sources } = make({ fetch: fakeFetch(() => notFound).fetch, auth: undefined });
      client.connect();
      await waitFor(() => client.state === "closed", "closed");
      equal(client.closeReason, "session_not_found", "reason");
      equal(sources.length, 0, "no stream opened");
    },

    async withoutATokenTheSessionCookieOpensTheStream() {
      const { client, nextSource } = make({ token: null, auth: undefined, withCredentials: true });
      client.connect();
      const es = await nextSource(1);
      equal(es.url, "/agent_backend/api/sse/events/s1", "no credential in the URL");
      equal(es.init, { withCredentials: true }, "the cookie goes along");
      client.close();
    },

    async accessRevokedStopsTheClient() {
      const { client, nextSource, sources } = make();
      client.connect();
      const es = await nextSource(1);
      es.open();
      es.send(message("access_revoked"));
      await waitFor(() => client.state === "closed", "closed");
      equal(client.closeReason, "access_revoked", "reason");
      await sleep(60);
      equal(sources.length, 1, "no reconnect");
    },

    async aWrongApiBaseIsAConfigurationError() {
      const errors = [];
      const report = window.reportError;
      window.reportError = (error) => errors.push(String(error));
      try {
        // The site's own 404 page: nothing of ours is mounted there.
        const { client, nextSource } = make({ fetch: fakeFetch(() => 404).fetch, apiBase: "/api" });
        client.connect();
        (await nextSource(1)).fail();
        await waitFor(() => client.state === "closed", "closed");
        equal(client.closeReason, "misconfigured", "reason");
        assert(errors.length === 1 && errors[0].includes('apiBase "/api"'), `reported: ${errors}`);
      } finally {
        window.reportError = report;
      }
    },

    async theApiBaseComesFromThePagesConfig() {
      const config = document.createElement("script");
      config.type = "application/json";
      config.id = "sse-config";
      config.textContent = JSON.stringify({ apiBase: "/copilot" });
      document.body.append(config);
      try {
        const { client, nextSource } = make();
        client.connect();
        equal((await nextSource(1)).url, "/copilot/sse/events/s1?token=t0", "URL");
        client.close();
        const explicit = make({ apiBase: "/elsewhere/" });
        explicit.client.connect();
        equal((await explicit.nextSource(1)).url, "/elsewhere/sse/events/s1?token=t0", "URL");
        explicit.client.close();
      } finally {
        config.remove();
      }
    },

    async expiringTokenIsReplacedBeforeConnecting() {
      const reasons = [];
      const { client, nextSource } = make({
        token: jwt(Math.floor(Date.now() / 1000) + 2),
        getToken: async ({ reason }) => {
          reasons.push(reason);
          return "longer";
        },
      });
      client.connect();
      const es = await nextSource(1);
      equal(reasons, ["expired"], "getToken reasons");
      equal(es.url, "/agent_backend/api/sse/events/s1?token=longer", "URL");
      client.close();
    },

    async approvePermissionPinsTheOldestRequestAndRetriesA401() {
      const api = fakeFetch((url, init, n) =>
        n === 2 ? 401 : { status: 200, body: { success: true, data: { status: "approved" } } },
      );
      const { client, nextSource } = make({ fetch: api.fetch, getToken: async () => "t1" });
      client.connect();
      const es = await nextSource(1);
      es.open();
      published(es, "permission_request", { request_id: "r1", tool_name: "a" }, "1-0");
      published(es, "permission_request", { request_id: "r2", tool_name: "b" }, "2-0");
      const result = await client.approvePermission(true, "ok");
      equal(result, { success: true, data: { status: "approved" } }, "result");
      equal(api.calls[0].url, "/agent_backend/api/sse/permission-response/s1", "URL");
      equal(api.calls[0].body, { approved: true, reason: "ok", request_id: "r1" }, "body");
      equal(api.calls[0].init.headers.Authorization, "Bearer t0", "token");
      equal(client.pendingPermissions.map((p) => p.request_id), ["r2"], "pending");
      await client.approvePermission(false, "no", "r2"); // 401, then a new token
      equal(api.calls.length, 3, "retried once");
      equal(api.calls[2].init.headers.Authorization, "Bearer t1", "new token");
      equal(api.calls[2].body, { approved: false, reason: "no", request_id: "r2" }, "body");
      equal(client.pendingPermissions, [], "pending");
      client.close();
    },

    async respondToPermissionSendsEditsAbortAndRemember() {
      const api = fakeFetch((url, init, n) =>
        n === 3
          ? { status: 400, body: { success: false, error: { code: "invalid", fields: {} } } }
          : { status: 200, body: { success: true, data: { status: "decided" } } },
      );
      const { client, nextSource } = make({ fetch: api.fetch });
      client.connect();
      const es = await nextSource(1);
      es.open();
      for (const [n, id] of ["r1", "r2", "r3"].entries()) {
        published(es, "permission_request", { request_id: id, tool_name: "t" }, `${n + 1}-0`);
      }
      const edited = await client.respondToPermission("r2", {
        approved: true,
        arguments: { path: "/b", mode: "w" },
        remember: "session",
      });
      equal(edited, { success: true, data: { status: "decided" } }, "result");
      equal(api.calls[0].url, "/agent_backend/api/sse/permission-response/s1", "URL");
      equal(
        api.calls[0].body,
        {
          approved: true,
          reason: "",
          request_id: "r2",
          arguments: { path: "/b", mode: "w" },
          remember: "session",
        },
        "approve with edits, remembered",
      );
      equal(client.pendingPermissions.map((p) => p.request_id), ["r1", "r3"], "pending");
      // No request id: the oldest one; only the fields given go out.
      await client.respondToPermission(null, { approved: false, reason: "Wrong file", abort: true });
      const abort = { approved: false, reason: "Wrong file", request_id: "r1", abort: true };
      equal(api.calls[1].body, abort, "deny and stop the run");
      const refused = await client.respondToPermission("r3", {
        approved: false,
        abort: false,
        remember: null,
      });
      equal(api.calls[2].body, { approved: false, reason: "", request_id: "r3" }, "falsy: left out");
      equal(refused.error.code, "invalid", "a 400 is returned");
      equal(client.pendingPermissions.map((p) => p.request_id), ["r3"], "a 400 leaves it pending");
      let thrown = null;
      try {
        await client.respondToPermission("r3", { approve: true }); // a typo must not deny
      } catch (error) {
        thrown = error;
      }
      assert(thrown instanceof TypeError, `a missing "approved" throws: ${thrown}`);
      equal(api.calls.length, 3, "and sends nothing");
      client.close();
    },

    async respondToPermissionsSettlesEachItemThatWasDecided() {
      const results = [
        { request_id: "r1", status: 200, decision: { status: "approved" } },
        { request_id: "r2", status: 409, error: { code: "already_decided" } },
        { request_id: "r3", status: 410, error: { code: "expired" } },
        { request_id: "r4", status: 400, error: { code: "invalid" } },
      ];
      const api = fakeFetch((url, init, n) =>
        n === 1
          ? { status: 200, body: { success: true, data: { results } } }
          : { status: 400, body: { success: false, error: { code: "invalid" } } },
      );
      const { client, nextSource } = make({ fetch: api.fetch });
      client.connect();
      const es = await nextSource(1);
      es.open();
      for (const [n, id] of ["r1", "r2", "r3", "r4", "r5"].entries()) {
        published(es, "permission_request", { request_id: id, tool_name: "t" }, `${n + 1}-0`);
      }
      const answer = await client.respondToPermissions([
        { requestId: "r1", approved: true, arguments: { a: 1 }, remember: "user" },
        { requestId: "r2", approved: true },
        { request_id: "r3", approved: false, reason: "no", abort: true },
        { requestId: "r4", approved: true },
      ]);
      equal(answer, { success: true, data: { results } }, "the server's answer");
      equal(api.calls.length, 1, "one POST");
      equal(api.calls[0].url, "/agent_backend/api/sse/permission-response/s1", "URL");
      equal(
        api.calls[0].body,
        {
          decisions: [
            { approved: true, reason: "", request_id: "r1", arguments: { a: 1 }, remember: "user" },
            { approved: true, reason: "", request_id: "r2" },
            { approved: false, reason: "no", request_id: "r3", abort: true },
            { approved: true, reason: "", request_id: "r4" },
          ],
        },
        "body",
      );
      const left = () => client.pendingPermissions.map((p) => p.request_id);
      equal(left(), ["r4", "r5"], "200, 409 and 410 settled");
      // The whole batch refused: nothing settles.
      const refused = await client.respondToPermissions([{ requestId: "r5", approved: true }]);
      equal(refused.success, false, "refused");
      equal(left(), ["r4", "r5"], "still pending");
      const empty = await client.respondToPermissions([]);
      equal(empty, { success: true, data: { results: [] } }, "empty");
      equal(api.calls.length, 2, "an empty batch asks nothing");
      let thrown = null;
      try {
        await client.respondToPermissions([{ approved: true }]);
      } catch (error) {
        thrown = error;
      }
      assert(thrown instanceof TypeError, `an answer without its request id throws: ${thrown}`);
      equal(api.calls.length, 2, "and sends nothing");
      client.close();
    },

    async closeStopsReconnecting() {
      const { client, sources, nextSource } = make({
        fetch: fakeFetch(() => 502).fetch,
        initialDelay: 30,
      });
      client.connect();
      const es = await nextSource(1);
      es.open();
      es.fail();
      await waitFor(() => client.state === "reconnecting", "reconnecting");
      client.close();
      await sleep(80);
      equal(sources.length, 1, "no reconnect after close()");
      equal(client.state, "closed", "state");
      equal(client.closeReason, "client", "reason");
      client.connect(); // and it can be opened again, from where it was
      equal((await nextSource(2)).url.includes("token=t0"), true, "reopened");
      client.close();
    },

    async silentStreamIsReopened() {
      const { client, nextSource } = make({ heartbeatGrace: 2 });
      client.connect();
      const es = await nextSource(1);
      es.open();
      es.send(message("connected", { heartbeat_interval: 0.02 }));
      published(es, "tool_status", {}, "3-0");
      const second = await nextSource(2); // nothing for 2 heartbeats: presumed dead
      assert(es.closed, "silent stream closed");
      equal(second.url.endsWith("&last_event_id=3-0"), true, "resumes");
      client.close();
    },

    async handlersAreIsolatedAndRemovable() {
      const { client, nextSource } = make();
      const got = [];
      const errors = [];
      window.addEventListener("error", (event) => {
        errors.push(event.message);
        event.preventDefault();
      });
      client.on("tool_status", () => {
        throw new Error("a broken handler");
      });
      const off = client.on("tool_status", (m) => got.push(`typed:${m.id}`));
      client.on("*", (m) => got.push(`any:${m.type}`));
      client.connect();
      const es = await nextSource(1);
      es.open();
      published(es, "tool_status", {}, "1-0");
      off();
      published(es, "tool_status", {}, "2-0");
      published(es, "custom_kind", {}, "3-0");
      equal(got, ["typed:1-0", "any:tool_status", "any:tool_status", "any:custom_kind"], "calls");
      equal(errors.length, 2, "handler errors reported, not thrown into the stream");
      client.close();
    },

    async acceptsATokenAsSecondArgument() {
      FakeEventSource.instances = [];
      const client = new window.AgentSSEClient("a b", "tok");
      client._EventSource = FakeEventSource;
      const api = fakeFetch(() => ({ status: 201, body: { ticket: "tk", expires_at: "" } }));
      client._fetch = api.fetch;
      client.connect();
      await waitFor(() => FakeEventSource.instances.length === 1, "EventSource");
      // The token buys a ticket: it never appears in a URL.
      equal(api.calls[0].init.headers.Authorization, "Bearer tok", "token");
      equal(FakeEventSource.instances[0].url, "/agent_backend/api/sse/events/a%20b?ticket=tk", "URL");
      client.close();
      equal(window.AgentSSEClient.compareEventIds("10-0", "9-5"), 1, "numeric comparison");
      equal(window.AgentSSEClient.compareEventIds("9-5", "9-10"), -1, "sequence comparison");
    },
  };

  window.sseClientCases = cases;
})();
