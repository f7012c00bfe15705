const sessionId = 'your-session-id';
const token = 'your-auth-token';

// 建立SSE连接
const eventSource = new EventSource(
    `/agent_backend/api/sse/events/${sessionId}?token=${encodeURIComponent(token)}`
);

// 监听消息
eventSource.onmessage = function(event) {
    const data = JSON.parse(event.data);
    console.log('收到事件:', data.type, data.data);
    
    switch (data.type) {
        case 'tool_status':
            console.log('工具状态:', data.data.status);
            break;
        case 'permission_request':
            console.log('权限请求:', data.data.tool_name);
            // 显示确认对话框
            showPermissionDialog(data.data);
            break;
        case 'tool_result':
            console.log('工具结果:', data.data.success);
            break;
        case 'heartbeat':
            console.log('心跳:', new Date(data.timestamp));
            break;
    }
};

// 错误处理
eventSource.onerror = function(event) {
    console.error('SSE连接错误:', event);
};

// 提交权限响应
async function approvePermission(approved, reason = '') {
    const response = await fetch(`/agent_backend/api/sse/permission-response/${sessionId}`, {
        method: 'POST',
        headers: {
            'Content-Type': 'application/json',
            'Authorization': `Bearer ${token}`
        },
        body: JSON.stringify({ approved, reason })
    });
    
    const result = await response.json();
    console.log('权限响应结果:', result);
}
