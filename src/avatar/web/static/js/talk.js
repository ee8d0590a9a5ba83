// The Talk tab: microphone → /ws/chat → transcript, streaming reply text and reply audio.
import { $ } from "./dom.js";
import { t, onLanguageChange, serverMessage } from "./i18n.js";
import { ChatSocket } from "./ws.js";
import { Player } from "./player.js";
import { formatLatency, renderWaterfall } from "./waterfall.js";
import { ConnectionView } from "./connection.js";
import { ChatLog } from "./chat-log.js";
import { VoiceInput } from "./voice-input.js";
import { Outbox } from "./outbox.js";
import { Pickers } from "./pickers.js";

let audioContext = null;
const QUIET_LEVEL = 0.2; // the reply while the user may be taking the turn (about -14 dB)

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
    this.outbox = new Outbox(this.socket, this.log);
    this.pickers = new Pickers();
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

  /** One line under the conversation: how soon the last reply began to speak. */
  summarizeLatency() {
    const v2v = this.lastMetrics?.voice_to_voice_ms;
    $("#latency-summary").textContent =
      typeof v2v === "number" ? t("talk.latencySummary", { v: formatLatency(v2v) }) : "";
  }

  retranslate() {
    this.input.retranslate();
    this.player.renderPosition();
    this.summarizeLatency();
    this.pickers.setEngines();
    this.sendConfig(); // the interface language decides how Chinese is written
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
      ...this.pickers.values(),
      hands_free: this.input.handsFree,
    });
  }

  sendText() {
    const input = $("#text-input");
    const text = input.value.trim();
    if (!text) return;
    ensureAudio();
    input.value = "";
    this.outbox.send(text, this.log.add("user", text));
    this.log.thinking();
    this.setTurnActive(true);
  }

  /** Messages that never reached the server, for the sign-in page. */
  undelivered() {
    return this.outbox.undelivered();
  }

  stopReply() {
    this.socket.send({ type: "interrupt" });
    this.player.cut(); // at once, without waiting for the server's `interrupted`
  }

  reportPlayback(turnId, playedMs, done) {
    this.socket.send({ type: "playback", turn_id: turnId, played_ms: playedMs });
    if (done) {
      this.log.speaking(turnId, false);
      this.settle();
    }
  }

  /** Quieten the reply now (the user started speaking over it); `unduckReply()` undoes it. */
  duckReply(level = 0) {
    this.player.duck(level);
  }

  unduckReply() {
    this.player.unduck();
  }

  /** The reply quieted by `reply_quiet` is resumed, cut or over: full volume for what plays. */
  endQuiet() {
    this.quietTurn = null;
    this.unduckReply();
  }

  newSession() {
    this.player.cut();
    this.endQuiet();
    this.log.clear();
    this.socket.restart();
  }

  dropped() {
    this.player.cut();
    this.endQuiet();
    this.log.cutOff();
    this.outbox.requeue();
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
        this.outbox.flush();
        break;
      case "config":
        this.configPending = false;
        this.serverConfig = event;
        this.pickers.apply(event);
        break;
      case "speech_started":
        this.input.setState("hearing");
        this.log.hearing();
        break;
      case "speech_stopped":
        if (!this.input.handsFree) break;
        this.input.setState("thinking");
        // Noise and too-short speech make no turn and no further event: rest again.
        clearTimeout(this.settleTimer);
        this.settleTimer = setTimeout(() => {
          this.log.dropLive();
          this.settle();
        }, 10_000);
        break;
      case "transcript":
        this.onTranscript(event);
        break;
      case "llm_token":
        if (!this.log.node.querySelector(`[data-turn-id="${CSS.escape(event.turn_id)}"]`)) {
          this.outbox.confirm();
        }
        this.log.appendToken(event.turn_id, event.token);
        this.setTurnActive(true);
        break;
      case "audio_response":
        if (this.quietTurn && event.turn_id !== this.quietTurn) this.endQuiet();
        this.setTurnActive(true);
        this.player.enqueue(event);
        this.log.speaking(event.turn_id, true);
        this.input.setState("speaking");
        break;
      case "reply_quiet": // the user started to speak over this reply: out of their way, now
        this.quietTurn = event.turn_id;
        this.duckReply(QUIET_LEVEL);
        break;
      case "reply_resume": // only a backchannel or a noise: play on
        if (event.turn_id === this.quietTurn) this.endQuiet();
        break;
      case "interrupted":
        this.player.cut(event.turn_id);
        if (event.turn_id === this.quietTurn) this.endQuiet(); // (cut first: nothing is heard)
        this.log.finish(event.turn_id, event.heard_text, true, null, event.reason);
        break;
      case "turn_end":
        this.outbox.confirm();
        this.log.finish(event.turn_id, event.text, event.interrupted, event.tts_mode);
        if (!this.player.playing) this.log.speaking(event.turn_id, false);
        this.lastMetrics = event.metrics || {};
        renderWaterfall($("#waterfall"), this.lastMetrics);
        this.summarizeLatency();
        this.setTurnActive(false);
        this.settle();
        break;
      case "error":
        this.banner.show(serverMessage(event), "error");
        this.log.dropThinking();
        if (event.turn_id) this.outbox.confirm();
        if (this.configPending && this.serverConfig) {
          // The server refused the new settings (say, hq speech not configured): show what
          // the session really uses.
          this.configPending = false;
          this.pickers.apply(this.serverConfig);
        }
        if (event.turn_id) this.setTurnActive(false);
        break;
      default:
        break;
    }
  }

  onTranscript(event) {
    const partial = $("#partial");
    if (!event.final) {
      partial.textContent = event.text;
      this.log.hearing(event.text);
      return;
    }
    partial.textContent = "";
    clearTimeout(this.settleTimer);
    // A new turn while the last reply still plays: the user has moved on, stop it.
    if (this.player.playing && this.player.turnId !== event.turn_id) this.player.cut();
    this.log.heard(event.text, event.turn_id);
    this.setTurnActive(true);
    this.input.setState("thinking");
  }

  /** The voice picker's options, from the voice-profile list. */
  setVoices(profiles) {
    if (this.pickers.setVoices(profiles)) this.sendConfig(); // the chosen profile went away
  }

  /** What the engines can do shapes the pickers (hq speech, voice cloning). */
  setEngines(status) {
    if (this.pickers.setEngines(status)) this.sendConfig();
  }
}
