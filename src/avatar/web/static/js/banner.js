// The message bar under the header (role="alert"): one message at a time, tagged by its source
// so that, say, a reconnect clears the connection warning but not a microphone error.
import { $ } from "./dom.js";

export class Banner {
  constructor() {
    this.node = $("#banner");
    this.text = $("#banner-text");
    this.tag = null;
    $("#banner-close").addEventListener("click", () => this.clear());
  }

  show(message, kind = "error", tag = "general") {
    this.tag = tag;
    this.node.dataset.kind = kind;
    this.node.dataset.tag = tag;
    if (this.text.textContent !== message) this.text.textContent = message;
    this.node.hidden = false;
  }

  /** Hide the message; with a tag, only if the message came from that source. */
  clear(tag) {
    if (tag && this.tag !== tag) return;
    this.node.hidden = true;
    this.text.textContent = "";
    this.tag = null;
  }
}
