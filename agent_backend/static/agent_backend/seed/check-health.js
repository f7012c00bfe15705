async function checkSSEHealth(sessionId, token) {
    const response = await fetch(`/agent_backend/api/sse/health/${sessionId}`, {
        headers: { 'Authorization': `Bearer ${token}` }
    });
    
    const health = await response.json();
    console.log('SSE健康状态:', health.data);
}
