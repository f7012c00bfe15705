/*
 * useAgentStream: a React hook over AgentSSEClient, in the spirit of the
 * product note's useSSEConnection but resuming without loss, backing off,
 * refreshing tokens and deduplicating permission requests.
 *
 *   const { state, isConnected, toolStatus, permissionRequest, permissionRequests,
 *           lastEvent, approvePermission, respond, respondAll, client } =
 *     useAgentStream(sessionId, { token, getToken });
 *
 * Plain JavaScript (no JSX): copy it into an app, or import it from the
 * static files with an import map that names "react".
 */
import { useCallback, useEffect, useRef, useState } from "react";

import { AgentSSEClient } from "../sse-client.mjs";

export function useAgentStream(sessionId, options = {}) {
  const [state, setState] = useState("idle");
  const [toolStatus, setToolStatus] = useState(null);
  // Every unanswered request, oldest first (permissionRequest is the first).
  const [permissionRequests, setPermissionRequests] = useState([]);
  const [lastEvent, setLastEvent] = useState(null);
  const clientRef = useRef(null);
  // The latest callbacks, without reconnecting when a parent re-renders.
  const optionsRef = useRef(options);
  optionsRef.current = options;

  const { apiBase, token } = options;

  useEffect(() => {
    if (!sessionId) return undefined;
    const current = optionsRef.current;
    const client = new AgentSSEClient(sessionId, {
      ...current,
      onStateChange: null,
      getToken: current.getToken ? (info) => optionsRef.current.getToken(info) : null,
    });
    clientRef.current = client;
    const syncPermission = () => setPermissionRequests(client.pendingPermissions);
    const unsubscribe = [
      client.onStateChange((next) => setState(next)),
      client.on("tool_status", (message) => setToolStatus(message.data)),
      client.on("permission_request", syncPermission),
      client.on("permission_cleared", syncPermission),
      client.on("*", (message) => {
        setLastEvent(message);
        optionsRef.current.onEvent?.(message);
      }),
    ];
    client.connect();
    return () => {
      unsubscribe.forEach((off) => off());
      client.close();
      if (clientRef.current === client) clientRef.current = null;
      setPermissionRequests([]);
    };
  }, [sessionId, apiBase]);

  // A new token (from a login, say) is used from the next request on.
  useEffect(() => {
    if (token) clientRef.current?.setToken(token);
  }, [token]);

  // Answer through the client, then show what is still pending.
  const answer = useCallback(async (method, args) => {
    const client = clientRef.current;
    if (!client) throw new Error("useAgentStream: not connected to a session");
    const result = await client[method](...args);
    setPermissionRequests(client.pendingPermissions);
    return result;
  }, []);
  // approvePermission(approved, reason, requestId), as the note's useSSEConnection has it.
  const approvePermission = useCallback((...args) => answer("approvePermission", args), [answer]);
  // respond(requestId, {approved, reason, arguments, abort, remember})
  const respond = useCallback(
    (requestId, reply) => answer("respondToPermission", [requestId, reply]),
    [answer],
  );
  // respondAll([{requestId, approved, ...}, ...]): one POST, each decided on its own.
  const respondAll = useCallback(
    (answers) => answer("respondToPermissions", [answers]),
    [answer],
  );

  return {
    state,
    isConnected: state === "open",
    toolStatus,
    permissionRequest: permissionRequests[0] ?? null,
    permissionRequests,
    lastEvent,
    approvePermission,
    respond,
    respondAll,
    client: clientRef.current,
  };
}

export default useAgentStream;
