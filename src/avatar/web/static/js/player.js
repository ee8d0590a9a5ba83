// Reply audio: PCM pieces scheduled back to back on one Web Audio clock, with a small jitter
// buffer before the first piece of a turn. `cut()` stops everything at once (barge-in);
// `duck()` / `unduck()` quieten and restore it within ~30 ms, and `pause()` / `resume()` stop it
// and carry on from the same sample (for "the user started speaking over the reply").
// The position reports (`onPosition`) feed the server's `playback` messages, so what the user
// heard is stored exactly.
import { t } from "./i18n.js";

const PREBUFFER_S = 0.12; // wait this long before the first piece of a turn
const MIN_LEAD_S = 0.02; // never schedule closer to "now" than this
const REPORT_EVERY_MS = 250;
const RAMP_S = 0.03; // duck and unduck fade over this long: quick, without a click
const DUCK_LEVEL = 0.2;

function decodePcm(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  const samples = new Float32Array(bytes.length >> 1);
  for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(i * 2, true) / 0x8000;
  return samples;
}

export class Player {
  /** onPosition(turnId, playedMs, done) is called while a turn plays and when it ends. */
  constructor(getContext, onPosition, statsNode) {
    this.getContext = getContext;
    this.onPosition = onPosition;
    this.stats = statsNode;
    this.turnId = null;
    this.pieces = []; // {source, start, duration}
    this.nextTime = 0;
    this.cutTurns = new Set();
    this.counts = { received: 0, played: 0, cut: 0 };
    this.timer = null;
    this.gain = null; // all reply audio goes through this node (duck/unduck)
    this.paused = null; // {turnId, rest: [{buffer, offset}]} while paused
    this.receivedMs = 0;
  }

  output(context) {
    if (!this.gain || this.gain.context !== context) {
      this.gain = context.createGain();
      this.gain.connect(context.destination);
    }
    return this.gain;
  }

  get playing() {
    return this.pieces.length > 0;
  }

  /** Queue one audio_response event; pieces of a cut turn are dropped. */
  enqueue(event) {
    if (this.cutTurns.has(event.turn_id)) return;
    const context = this.getContext();
    if (!context) return;
    if (event.turn_id !== this.turnId) this.startTurn(event.turn_id);
    const samples = decodePcm(event.data);
    if (!samples.length) return;
    const buffer = context.createBuffer(1, samples.length, event.sample_rate);
    buffer.copyToChannel(samples, 0);
    this.counts.received += 1;
    this.receivedMs += buffer.duration * 1000;
    if (this.paused) this.paused.rest.push({ buffer, offset: 0 });
    else this.schedule(context, buffer, 0);
    this.render(this.paused ? "paused" : "playing");
  }

  /** Play `buffer` from `offset` s right after what is already scheduled. */
  schedule(context, buffer, offset) {
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output(context));
    const now = context.currentTime;
    const first = this.nextTime === 0;
    const start = Math.max(this.nextTime, now + (first ? PREBUFFER_S : MIN_LEAD_S));
    const duration = buffer.duration - offset;
    const piece = { source, buffer, offset, start, duration, ended: false };
    source.onended = () => this.ended(piece);
    source.start(start, offset);
    this.nextTime = start + duration;
    this.pieces.push(piece);
    this.turnPieces.push(piece);
    this.ensureReports();
  }

  /** Quieten the reply (to `level`, 0 = silent) at once, keeping its place; `unduck()` undoes. */
  duck(level = DUCK_LEVEL) {
    this.fadeTo(level);
    this.stats.dataset.ducked = "true";
  }

  unduck() {
    this.fadeTo(1);
    this.stats.dataset.ducked = "false";
  }

  fadeTo(level) {
    const context = this.getContext();
    if (!context) return;
    const gain = this.output(context).gain;
    gain.cancelScheduledValues(context.currentTime);
    gain.setTargetAtTime(level, context.currentTime, RAMP_S / 3);
  }

  /** Stop the reply where it is; `resume()` carries on from that sample. New pieces queue up. */
  pause() {
    const context = this.getContext();
    if (!context || this.paused || !this.pieces.length) return false;
    const now = context.currentTime;
    const rest = [];
    for (const piece of this.pieces) {
      const played = Math.max(0, Math.min(piece.duration, now - piece.start));
      if (played < piece.duration)
        rest.push({ buffer: piece.buffer, offset: piece.offset + played });
    }
    this.paused = { turnId: this.turnId, rest };
    this.stopSources(false);
    this.render("paused");
    return true;
  }

  resume() {
    const paused = this.paused;
    this.paused = null;
    const context = this.getContext();
    if (!paused || !context || paused.turnId !== this.turnId) return false;
    for (const { buffer, offset } of paused.rest) this.schedule(context, buffer, offset);
    this.render(this.pieces.length ? "playing" : "idle");
    return true;
  }

  startTurn(turnId) {
    this.stopSources();
    this.paused = null;
    this.turnId = turnId;
    this.turnPieces = [];
    this.receivedMs = 0;
    this.nextTime = 0;
  }

  ended(piece) {
    if (piece.ended) return;
    piece.ended = true;
    this.pieces = this.pieces.filter((p) => p !== piece);
    if (!piece.cut) this.counts.played += 1;
    if (!this.pieces.length) {
      this.report(true);
      this.nextTime = 0;
      this.render("idle");
    } else {
      this.render("playing");
    }
  }

  /** Milliseconds of the current turn's audio that have actually come out of the speakers. */
  playedMs() {
    const context = this.getContext();
    if (!context || !this.turnPieces) return 0;
    const now = context.currentTime;
    let total = 0;
    for (const piece of this.turnPieces) {
      total += Math.max(0, Math.min(piece.duration, now - piece.start));
    }
    return total * 1000;
  }

  ensureReports() {
    if (this.timer) return;
    this.timer = setInterval(() => this.report(false), REPORT_EVERY_MS);
  }

  report(done) {
    if (this.turnId) this.onPosition(this.turnId, Math.round(this.playedMs()), done);
    this.renderPosition();
    if (done && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Stop at once: used on `interrupted`, on a new turn, and when the connection drops. */
  cut(turnId = this.turnId) {
    if (turnId) this.cutTurns.add(turnId);
    if (turnId && turnId !== this.turnId) return;
    const had = this.pieces.length > 0 || this.paused !== null;
    this.paused = null;
    this.stopSources();
    if (had) this.counts.cut += 1;
    this.render(had ? "cut" : this.stats.dataset.state);
  }

  stopSources(final = true) {
    const context = this.getContext();
    const now = context ? context.currentTime : 0;
    for (const piece of this.pieces) {
      piece.cut = true;
      piece.duration = Math.max(0, Math.min(piece.duration, now - piece.start));
      piece.source.onended = null;
      try {
        piece.source.stop();
      } catch {
        // a piece that never started cannot be stopped twice; it is gone either way
      }
      piece.source.disconnect();
    }
    this.pieces = [];
    this.nextTime = 0;
    if (final && this.timer) this.report(true);
  }

  render(state) {
    const stats = this.stats;
    stats.dataset.state = state;
    stats.dataset.chunksReceived = String(this.counts.received);
    stats.dataset.chunksPlayed = String(this.counts.played);
    stats.dataset.cut = String(this.counts.cut);
    this.renderPosition();
  }

  /** "Played 2.0 s of 4.1 s received" for the current reply: one measure, never contradictory. */
  renderPosition() {
    const ms = Math.round(this.playedMs());
    this.stats.dataset.playedMs = String(ms);
    this.stats.dataset.receivedMs = String(Math.round(this.receivedMs));
    const seconds = (v) => `${(v / 1000).toFixed(1)} s`;
    this.stats.querySelector("#played-time").textContent = seconds(ms);
    this.stats.querySelector("#received-time").textContent = seconds(this.receivedMs);
    this.stats.querySelector("#player-state").textContent = t(`player.${this.stats.dataset.state}`);
  }
}
