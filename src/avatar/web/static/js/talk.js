// The Talk tab: microphone → /ws/chat → transcript, streaming reply text and reply audio.
import { $, el } from "./dom.js";
import { t, onLanguageChange } from "./i18n.js";
import { ChatSocket } from "./ws.js";
import { Player } from "./player.js";
import { renderWaterfall } from "./waterfall.js";
import { ConnectionView } from "./connection.js";
import { ChatLog } from "./chat-log.js";
import { VoiceInput } from "./voice-input.js";

let audioContext = null;

/** The one AudioContext (capture and playback); made and resumed inside a user gesture. */
function ensureAudio() {
  if (!audioContext) audioContext = new AudioContext({ latencyHint: "interactive" });
  if (audioContext.state === "suspended") audioContext.resume();
  return audioContext;
}

export class Talk {
  constructor({ banner, onRefused }) {
    this.banner = banner;
    this.socket = new ChatSocket();
    this.log = new ChatLog($("#chat-log"));
    this.player = new Player(
      () => audioContext,
      (id, ms, done) => this.reportPlayback(id, ms, done),
      $("#player-stats"),
    );
    this.input = new VoiceInput({
      audioContext: () => {
        this.socket.connect();
        return ensureAudio();
      },
      send: (pcm) => this.socket.sendAudio(pcm),
      endOfUtterance: () => this.socket.send({ type: "end_of_utterance" }),
      beforeTalking: () => this.replying && this.stopReply(),
      modeChanged: () => this.sendConfig(),
      failed: (message) => this.banner.show(message, "error", "mic"),
    });
    this.connection = new ConnectionView(this.socket, {
      banner,
      onRefused,
      replying: () => this.replying,
      onDrop: () => this.dropped(),
    });
    this.turnActive = false;
    this.serverConfig = null;
    this.configPending = false;
    this.pendingTexts = [];
    this.lastMetrics = null;
    this.socket.addEventListener("message", (e) => this.onEvent(e.detail));
    this.bind();
    this.retranslate();
    onLanguageChange(() => this.retranslate());
  }

  get replying() {
    return this.turnActive || this.player.playing;
  }

  bind() {
    $("#stop-reply").addEventListener("click", () => this.stopReply());
    $("#new-session").addEventListener("click", () => this.newSession());
    $("#text-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.sendText();
    });
    for (const id of ["#voice-select", "#tts-select", "#lang-select"]) {
      $(id).addEventListener("change", () => this.sendConfig());
    }
  }

  retranslate() {
    this.input.retranslate();
    if (this.lastMetrics) renderWaterfall($("#waterfall"), this.lastMetrics);
  }

  /** Connect when the app is shown (signed in). */
  start() {
    this.socket.connect();
  }

  /** Signed out: no microphone, no connection. */
  stop() {
    this.input.stop();
    this.socket.close();
  }

  // --- messages out ---------------------------------------------------------------------

  sendConfig() {
    this.configPending = this.socket.isOpen;
    this.socket.send({
      type: "config",
      language: $("#lang-select").value,
      tts_mode: $("#tts-select").value,
      voice_profile_id: $("#voice-select").value,
      hands_free: this.input.handsFree,
    });
  }

  sendText() {
    const input = $("#text-input");
    const text = input.value.trim();
    if (!text) return;
    ensureAudio();
    input.value = "";
    this.log.add("user", text);
    if (this.socket.isOpen) this.socket.send({ type: "text", text });
    else {
      this.pendingTexts.push(text);
      this.socket.connect();
    }
    this.setTurnActive(true);
  }

  stopReply() {
    this.socket.send({ type: "interrupt" });
    this.player.cut(); // at once, without waiting for the server's `interrupted`
  }

  reportPlayback(turnId, playedMs, done) {
    this.socket.send({ type: "playback", turn_id: turnId, played_ms: playedMs });
    if (done) this.settle();
  }

  newSession() {
    this.player.cut();
    this.log.clear();
    this.socket.restart();
  }

  dropped() {
    this.player.cut();
    this.log.cutOff();
    this.setTurnActive(false);
    this.settle();
  }

  setTurnActive(active) {
    this.turnActive = active;
    $("#stop-reply").disabled = !this.replying;
  }

  /** Back to rest once the reply has been said and played. */
  settle() {
    $("#stop-reply").disabled = !this.replying;
    if (!this.replying) this.input.rest();
  }

  // --- messages in ----------------------------------------------------------------------

  onEvent(event) {
    switch (event.type) {
      case "session_started":
        $("#chat-log").dataset.sessionId = event.session_id;
        this.serverConfig = event.config;
        this.sendConfig();
        for (const text of this.pendingTexts.splice(0)) this.socket.send({ type: "text", text });
        break;
      case "config":
        this.configPending = false;
        this.serverConfig = event;
        this.applyConfig(event);
        break;
      case "speech_started":
        this.input.setState("hearing");
        break;
      case "speech_stopped":
        if (!this.input.handsFree) break;
        this.input.setState("thinking");
        // Noise and too-short speech make no turn and no further event: rest again.
        clearTimeout(this.settleTimer);
        this.settleTimer = setTimeout(() => this.settle(), 10_000);
        break;
      case "transcript":
        this.onTranscript(event);
        break;
      case "llm_token":
        this.log.appendToken(event.turn_id, event.token);
        this.setTurnActive(true);
        break;
      case "audio_response":
        this.setTurnActive(true);
        this.player.enqueue(event);
        this.input.setState("speaking");
        break;
      case "reply_quiet":
        this.player.duck(event.turn_id);
        break;
      case "reply_resume":
        this.player.unduck(event.turn_id);
        break;
      case "interrupted":
        this.player.cut(event.turn_id);
        this.log.finish(event.turn_id, event.heard_text, true);
        break;
      case "turn_end":
        this.log.finish(event.turn_id, event.text, event.interrupted, event.tts_mode);
        this.lastMetrics = event.metrics || {};
        renderWaterfall($("#waterfall"), this.lastMetrics);
        this.setTurnActive(false);
        this.settle();
        break;
      case "error":
        this.banner.show(`${event.message} (${event.code})`, "error");
        if (this.configPending && this.serverConfig) {
          // The server refused the new settings (say, hq speech not configured): show what
          // the session really uses.
          this.configPending = false;
          this.applyConfig(this.serverConfig);
        }
        if (event.turn_id) this.setTurnActive(false);
        break;
      default:
        break;
    }
  }

  applyConfig(config) {
    const set = (id, value) => {
      const select = $(id);
      if ([...select.options].some((o) => o.value === value)) select.value = value;
    };
    set("#lang-select", config.language || "auto");
    set("#tts-select", config.tts_mode || "auto");
    set("#voice-select", config.voice_profile_id || "");
  }

  onTranscript(event) {
    const partial = $("#partial");
    if (!event.final) {
      partial.textContent = event.text;
      return;
    }
    partial.textContent = "";
    // A new turn while the last reply still plays: the user has moved on, stop it.
    if (this.player.playing && this.player.turnId !== event.turn_id) this.player.cut();
    this.log.add("user", event.text, event.turn_id);
    this.setTurnActive(true);
    this.input.setState("thinking");
  }

  /** The voice picker's options, from the voice-profile list. */
  setVoices(profiles) {
    const select = $("#voice-select");
    const current = select.value;
    const options = profiles.map((p) => el("option", { value: p.id, text: p.name }));
    select.replaceChildren(select.options[0], ...options);
    select.value = profiles.some((p) => p.id === current) ? current : "";
    if (select.value !== current) this.sendConfig(); // the chosen profile was deleted
  }
}
