class SSEClient {
    constructor(sessionId, token) {
        this.sessionId = sessionId;
        this.token = token;
        this.reconnectAttempts = 0;
        this.maxReconnectAttempts = 5;
        this.eventSource = null;
    }

    connect() {
        const url = `/agent_backend/api/sse/events/${this.sessionId}?token=${encodeURIComponent(this.token)}`;
        this.eventSource = new EventSource(url);

        this.eventSource.onopen = () => {
            console.log('SSE连接成功');
            this.reconnectAttempts = 0;
        };

        this.eventSource.onerror = () => {
            console.error('SSE连接错误');
            this.handleReconnect();
        };

        this.eventSource.onmessage = (event) => {
            const data = JSON.parse(event.data);
            this.handleMessage(data);
        };
    }

    handleReconnect() {
        if (this.reconnectAttempts < this.maxReconnectAttempts) {
            this.reconnectAttempts++;
            const delay = Math.pow(2, this.reconnectAttempts) * 1000;
            
            console.log(`${delay}ms后重连...`);
            setTimeout(() => this.connect(), delay);
        } else {
            console.error('达到最大重连次数');
        }
    }

    handleMessage(data) {
        // 处理消息
    }

    disconnect() {
        if (this.eventSource) {
            this.eventSource.close();
        }
    }
}
