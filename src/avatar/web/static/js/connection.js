// The connection status pill and its messages: connected, unreachable, dropped mid-reply,
// reconnecting with a countdown. The pill's data-state is what tests and styles key on.
import { $ } from "./dom.js";
import { t, onLanguageChange } from "./i18n.js";

export class ConnectionView {
  constructor(socket, { banner, onRefused, replying, onDrop }) {
    this.socket = socket;
    this.banner = banner;
    this.onRefused = onRefused;
    this.replying = replying;
    this.onDrop = onDrop;
    this.pill = $("#conn-status");
    this.status = { state: "idle" };
    this.deadline = 0;
    this.ticker = null;
    this.droppedMidReply = false;
    socket.addEventListener("status", (e) => this.update(e.detail));
    // The pill only says how things are; the button beside it acts, and only when it can.
    this.retry = $("#conn-retry");
    this.retry.addEventListener("click", () => socket.retryNow());
    onLanguageChange(() => this.render());
  }

  update(status) {
    const previous = this.status.state;
    this.status = status;
    if (status.state === "reconnecting") {
      this.deadline = Date.now() + status.delayMs;
      if (previous === "open") {
        this.droppedMidReply = this.replying();
        this.onDrop();
      }
      this.startTicker();
      if (status.refused) this.onRefused?.();
    } else {
      this.stopTicker();
    }
    if (status.state === "open") {
      if (previous === "reconnecting" || previous === "connecting") this.banner.clear("conn");
      this.droppedMidReply = false;
    }
    this.render();
  }

  startTicker() {
    if (this.ticker) return;
    this.ticker = setInterval(() => this.render(), 500);
  }

  stopTicker() {
    clearInterval(this.ticker);
    this.ticker = null;
  }

  render() {
    const { state, everOpened } = this.status;
    const seconds = Math.max(0, Math.ceil((this.deadline - Date.now()) / 1000));
    let text;
    let banner = null;
    switch (state) {
      case "open":
        text = t("conn.open");
        break;
      case "connecting":
        text = t("conn.connecting");
        break;
      case "reconnecting":
        text = t("conn.reconnecting", { s: seconds });
        // The countdown is in the pill only: the banner is an alert, read out when it changes.
        if (!everOpened) banner = t("conn.unreachable");
        else if (this.droppedMidReply) banner = t("conn.droppedReply");
        else banner = t("conn.dropped");
        break;
      case "idle":
        text = t("conn.idle");
        break;
      default:
        text = t("conn.closed");
    }
    this.pill.dataset.state = state;
    this.pill.textContent = text;
    this.retry.hidden = !(state === "reconnecting" || state === "idle");
    if (banner) this.banner.show(banner, "warning", "conn");
    else if (state === "closed") this.banner.clear("conn");
  }
}
