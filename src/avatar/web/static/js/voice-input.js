// The Talk tab's microphone controls: start/stop, hands-free or push-to-talk (the button, or
// Space held down), the level meter and the status line under the conversation.
import { $, $$, setWidth } from "./dom.js";
import { t } from "./i18n.js";
import { Microphone, MicError } from "./audio-capture.js";

export class VoiceInput {
  /**
   * hooks: audioContext() → AudioContext (inside the gesture), send(pcm), endOfUtterance(),
   * beforeTalking() (stop a playing reply), modeChanged(handsFree), failed(message)
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.mic = null;
    this.handsFree = true;
    this.holding = false;
    this.releasing = false;
    this.bind();
  }

  get active() {
    return Boolean(this.mic?.active);
  }

  bind() {
    $("#mic-button").addEventListener("click", () => (this.active ? this.stop() : this.start()));
    $$("input[name=talk-mode]").forEach((radio) =>
      radio.addEventListener("change", () => this.setMode(radio.value === "hands-free")),
    );
    const ptt = $("#ptt-button");
    ptt.addEventListener("pointerdown", (e) => {
      ptt.setPointerCapture?.(e.pointerId);
      this.press();
    });
    ptt.addEventListener("pointerup", () => this.release());
    ptt.addEventListener("pointercancel", () => this.release());
    ptt.addEventListener("contextmenu", (e) => e.preventDefault()); // long press on phones
    document.addEventListener("keydown", (e) => this.onKey(e, true));
    document.addEventListener("keyup", (e) => this.onKey(e, false));
  }

  async start() {
    const context = this.hooks.audioContext();
    if (!this.mic) this.mic = new Microphone(context, (pcm, level) => this.onChunk(pcm, level));
    this.setState("starting");
    try {
      await this.mic.start();
    } catch (error) {
      const reason = error instanceof MicError ? error.reason : "failed";
      this.setState("error", t("mic.unavailable"));
      this.hooks.failed(t(`mic.${reason}`));
      return false;
    }
    $("#mic-button").setAttribute("aria-pressed", "true");
    this.retranslate();
    this.rest();
    return true;
  }

  stop() {
    this.mic?.stop();
    this.holding = false;
    $("#ptt-button").classList.remove("held");
    $("#mic-button").setAttribute("aria-pressed", "false");
    setWidth($("#mic-level"), 0);
    this.retranslate();
    this.setState("off");
  }

  onChunk(pcm, level) {
    setWidth($("#mic-level"), Math.min(1, Math.sqrt(level) * 2.2));
    if (this.handsFree || this.holding || this.releasing) this.hooks.send(pcm);
  }

  setState(state, text) {
    const node = $("#mic-state");
    node.dataset.state = state;
    node.textContent = text || t(`mic.${state}`);
  }

  /** The resting state: listening (hands-free), ready (push-to-talk) or off. */
  rest() {
    if (this.holding) return;
    if (this.active) this.setState(this.handsFree ? "listening" : "ready");
    else this.setState("off");
  }

  retranslate() {
    const state = $("#mic-state").dataset.state;
    if (state !== "error") this.setState(state);
    $("#mic-label").textContent = t(this.active ? "talk.stop" : "talk.start");
  }

  setMode(handsFree) {
    this.handsFree = handsFree;
    $("#ptt-button").hidden = handsFree;
    $("#ptt-hint").hidden = handsFree;
    this.rest();
    this.hooks.modeChanged(handsFree);
  }

  async press() {
    if (this.handsFree || this.holding) return;
    this.holding = true;
    $("#ptt-button").classList.add("held");
    if (!this.active && !(await this.start())) {
      this.holding = false;
      $("#ptt-button").classList.remove("held");
      return;
    }
    this.hooks.beforeTalking();
    if (this.holding) this.setState("hearing");
  }

  async release() {
    if (!this.holding) return;
    this.holding = false;
    this.releasing = true;
    $("#ptt-button").classList.remove("held");
    await this.mic?.flush(); // the last few milliseconds belong to the utterance
    this.releasing = false;
    this.hooks.endOfUtterance();
    this.setState("thinking");
  }

  onKey(event, down) {
    if (event.code !== "Space" || this.handsFree || $("#panel-talk").hidden) return;
    const target = event.target;
    const typing = target.closest?.("input:not([type=radio]), textarea, select, [contenteditable]");
    const otherButton = target.closest?.("button, a") && target.id !== "ptt-button";
    if (typing || otherButton || $$("dialog[open]").length) return;
    event.preventDefault();
    if (down && !event.repeat) this.press();
    else if (!down) this.release();
  }
}
