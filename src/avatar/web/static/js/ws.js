// The /ws/chat connection: JSON events in, PCM and JSON messages out, automatic reconnect with
// a short backoff (a restarted server is found again within a few seconds). The login cookie authenticates it (same origin); the session id is kept
// so a reconnect continues the same stored conversation.

const MAX_BUFFERED = 256 * 1024; // drop microphone audio rather than queue seconds of it
const BACKOFF_MS = [300, 1000, 2000, 3000];

/**
 * Events (dispatched as CustomEvent on the instance):
 *   "status"  detail {state: connecting|open|reconnecting|idle|closed, delayMs, attempt,
 *             everOpened, code, reason}
 *   "message" detail: the parsed server event
 */
export class ChatSocket extends EventTarget {
  constructor() {
    super();
    this.ws = null;
    this.sessionId = null;
    this.wanted = false;
    this.attempt = 0;
    this.everOpened = false;
    this.timer = null;
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Connect (or stay connected); safe to call at any time. */
  connect() {
    this.wanted = true;
    if (this.ws || this.timer) return;
    this.open();
  }

  open() {
    this.timer = null;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = this.sessionId ? `?session_id=${encodeURIComponent(this.sessionId)}` : "";
    const ws = new WebSocket(`${scheme}://${location.host}/ws/chat${query}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.emit("status", { state: "connecting", attempt: this.attempt });
    ws.onopen = () => {
      ws.opened = true;
      this.attempt = 0;
      this.everOpened = true;
      this.emit("status", { state: "open" });
    };
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "session_started") this.sessionId = message.session_id;
      this.emit("message", message);
    };
    ws.onclose = (event) => this.closed(ws, event);
  }

  closed(ws, event) {
    if (this.ws !== ws) return;
    this.ws = null;
    const info = {
      code: event.code,
      reason: event.reason,
      everOpened: this.everOpened,
      refused: !ws.opened, // this attempt never opened: server down, or the login was refused
    };
    if (!this.wanted) {
      this.emit("status", { state: "closed", ...info });
      return;
    }
    if (event.code === 1001 && /idle/i.test(event.reason)) {
      // The server closed a quiet connection; connect again when there is something to say.
      this.wanted = false;
      this.emit("status", { state: "idle", ...info });
      return;
    }
    const delayMs = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const jittered = Math.round(delayMs * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    this.timer = setTimeout(() => this.open(), jittered);
    this.emit("status", {
      state: "reconnecting",
      delayMs: jittered,
      attempt: this.attempt,
      ...info,
    });
  }

  /** Reconnect now (a user action while waiting for the next try). */
  retryNow() {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.wanted = true;
    if (!this.ws) this.open();
  }

  /** Start a new conversation: a fresh connection without the old session id. */
  restart() {
    this.sessionId = null;
    this.close();
    this.connect();
  }

  close() {
    this.wanted = false;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.close(1000);
    }
    // Also while only waiting for the next try: the "reconnecting" state must end here.
    this.emit("status", { state: "closed", code: 1000, everOpened: this.everOpened });
  }

  send(message) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  sendAudio(pcm) {
    if (!this.isOpen || this.ws.bufferedAmount > MAX_BUFFERED) return false;
    this.ws.send(pcm);
    return true;
  }
}
