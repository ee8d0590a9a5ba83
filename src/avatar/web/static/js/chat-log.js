// The conversation on the Talk tab: user turns, replies streaming in token by token, and how
// each reply ended (interrupted, cut off by a lost connection, which speech mode spoke it).
import { $, el } from "./dom.js";
import { t } from "./i18n.js";

export class ChatLog {
  constructor(node) {
    this.node = node;
  }

  clear() {
    const empty = el("li", { class: "chat-empty", dataset: { i18n: "talk.empty" } });
    empty.textContent = t("talk.empty");
    this.node.replaceChildren(empty);
  }

  add(role, text, turnId = null) {
    this.node.querySelector(".chat-empty")?.remove();
    const item = el(
      "li",
      { class: `msg ${role}`, dataset: turnId ? { turnId } : {} },
      el("span", { class: "who", text: role === "user" ? t("talk.you") : "AVATAR" }),
      el("p", { class: "msg-text", text }),
      el("span", { class: "msg-meta" }),
    );
    this.node.append(item);
    item.scrollIntoView({ block: "end", behavior: "smooth" });
    return item;
  }

  reply(turnId) {
    const selector = `.msg.assistant[data-turn-id="${CSS.escape(turnId)}"]`;
    return this.node.querySelector(selector) || this.add("assistant", "", turnId);
  }

  appendToken(turnId, token) {
    const item = this.reply(turnId);
    item.classList.add("streaming");
    item.setAttribute("aria-busy", "true"); // read out once complete, not token by token
    $(".msg-text", item).textContent += token;
  }

  /** The reply is over: show the final (or, when interrupted, the heard) text. */
  finish(turnId, text, interrupted, ttsMode) {
    const item = this.reply(turnId);
    item.classList.remove("streaming");
    item.removeAttribute("aria-busy");
    if (typeof text === "string" && (text || interrupted)) $(".msg-text", item).textContent = text;
    const meta = [];
    if (interrupted) {
      item.classList.add("interrupted");
      meta.push(t("talk.interrupted"));
    }
    if (ttsMode) meta.push(t(`tts.${ttsMode}`));
    $(".msg-meta", item).textContent = meta.join(" · ");
  }

  /** The connection dropped: replies still streaming end here. */
  cutOff() {
    for (const item of this.node.querySelectorAll(".msg.streaming")) {
      item.classList.remove("streaming");
      item.removeAttribute("aria-busy");
      item.classList.add("interrupted");
      $(".msg-meta", item).textContent = t("talk.connectionLost");
    }
  }
}
