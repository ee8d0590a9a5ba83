// The conversation on the Talk tab: the user's words as they are heard (live partial
// transcripts), a thinking bubble until the reply starts, replies streaming in token by token,
// who is speaking now, and how each reply ended (interrupted by the user, cut off by a lost
// connection or a server stop, which speech mode spoke it).
import { $, el } from "./dom.js";
import { onLanguageChange, t } from "./i18n.js";

const USER_REASONS = new Set(["barge_in", "client", "new_turn"]);

export class ChatLog {
  constructor(node) {
    this.node = node;
    onLanguageChange(() => this.relabel());
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
      el(
        "span",
        { class: "who" },
        role === "user"
          ? el("span", { class: "who-name", dataset: { i18n: "talk.you" }, text: t("talk.you") })
          : el("span", { class: "who-name", text: "AVATAR" }),
        el("span", { class: "who-now" }),
      ),
      el("p", { class: "msg-text", text }),
      el("span", { class: "msg-meta" }),
    );
    this.node.append(item);
    item.scrollIntoView({ block: "end", behavior: "smooth" });
    return item;
  }

  /** Say what each bubble is doing now in the interface language (after a language switch). */
  relabel() {
    for (const item of this.node.querySelectorAll("[data-now]")) {
      $(".who-now", item).textContent = t(`talk.now.${item.dataset.now}`);
    }
  }

  /** Mark `item` as doing something now ("speaking", "thinking", "listening") or nothing. */
  activity(item, what) {
    for (const other of this.node.querySelectorAll(`[data-now]`)) {
      if (other !== item) delete other.dataset.now;
    }
    if (!item) return;
    const now = $(".who-now", item);
    if (what) {
      item.dataset.now = what;
      now.textContent = t(`talk.now.${what}`);
    } else {
      delete item.dataset.now;
      now.textContent = "";
    }
  }

  /** The user is speaking: one live bubble shows what is heard so far. */
  hearing(text = "") {
    let item = this.node.querySelector(".msg.user.live");
    if (!item) {
      item = this.add("user", "");
      item.classList.add("live");
    }
    if (text) $(".msg-text", item).textContent = text;
    this.activity(item, "listening");
    return item;
  }

  /** The final transcript: the live bubble becomes the user's turn. */
  heard(text, turnId) {
    const item = this.node.querySelector(".msg.user.live") || this.add("user", "");
    item.classList.remove("live");
    item.dataset.turnId = turnId;
    $(".msg-text", item).textContent = text;
    this.activity(item, null);
    this.thinking();
    return item;
  }

  /** Speech that made no turn (noise, too short): the live bubble goes. */
  dropLive() {
    this.node.querySelector(".msg.user.live")?.remove();
  }

  /** The assistant is working on a reply: a bubble in the conversation until text arrives. */
  thinking() {
    let item = this.node.querySelector(".msg.assistant.thinking");
    if (!item) {
      item = this.add("assistant", "");
      item.classList.add("thinking");
      $(".msg-text", item).append(
        el("span", { class: "dots", "aria-hidden": "true" }, el("i"), el("i"), el("i")),
      );
    }
    this.activity(item, "thinking");
    return item;
  }

  dropThinking() {
    this.node.querySelector(".msg.assistant.thinking")?.remove();
  }

  reply(turnId) {
    const selector = `.msg.assistant[data-turn-id="${CSS.escape(turnId)}"]`;
    const found = this.node.querySelector(selector);
    if (found) return found;
    const waiting = this.node.querySelector(".msg.assistant.thinking");
    if (!waiting) return this.add("assistant", "", turnId);
    waiting.classList.remove("thinking");
    waiting.dataset.turnId = turnId;
    $(".msg-text", waiting).textContent = "";
    this.activity(waiting, null);
    return waiting;
  }

  appendToken(turnId, token) {
    const item = this.reply(turnId);
    item.classList.add("streaming");
    item.setAttribute("aria-busy", "true"); // read out once complete, not token by token
    $(".msg-text", item).textContent += token;
  }

  /** The reply's audio is playing (or stopped: `on` false). */
  speaking(turnId, on) {
    const item = turnId ? this.reply(turnId) : null;
    if (on) this.activity(item, "speaking");
    else if (item?.dataset.now === "speaking") this.activity(item, null);
  }

  /** The reply is over: show the final (or, when interrupted, the heard) text. */
  finish(turnId, text, interrupted, ttsMode, reason = null) {
    const item = this.reply(turnId);
    item.classList.remove("streaming");
    item.removeAttribute("aria-busy");
    if (typeof text === "string" && (text || interrupted)) $(".msg-text", item).textContent = text;
    const meta = [];
    if (interrupted) {
      const byUser = reason === null ? item.dataset.reason !== "server" : USER_REASONS.has(reason);
      item.dataset.reason = byUser ? "user" : "server";
      item.classList.add(byUser ? "interrupted" : "cut-off");
      meta.push(t(byUser ? "talk.interrupted" : "talk.serverStopped"));
    }
    if (ttsMode) meta.push(t(`tts.${ttsMode}`));
    $(".msg-meta", item).textContent = meta.join(" · ");
  }

  /** The connection dropped: replies still streaming end here, not by the user's doing. */
  cutOff() {
    this.dropThinking();
    this.dropLive();
    for (const item of this.node.querySelectorAll(".msg.streaming")) {
      item.classList.remove("streaming");
      item.removeAttribute("aria-busy");
      item.classList.add("cut-off");
      item.dataset.reason = "server";
      $(".msg-meta", item).textContent = t("talk.connectionLost");
    }
    this.activity(null, null);
  }

  /** A typed message waits for the server (`pending`), reached it, or could not be sent. */
  delivery(item, state) {
    item.dataset.delivery = state;
    $(".msg-meta", item).textContent = state === "sent" ? "" : t(`talk.delivery.${state}`);
  }
}
