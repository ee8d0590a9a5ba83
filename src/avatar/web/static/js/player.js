// Reply audio: PCM pieces scheduled back to back on one Web Audio clock, with a small jitter
// buffer before the first piece of a turn. `cut()` stops everything at once (barge-in);
// `duck()` lowers it the moment the user starts to speak (`reply_quiet`), `unduck()` brings it
// back when that was only a backchannel (`reply_resume`). Ducking, not pausing, keeps the
// server's estimate of what was played true, and what quiet audio remains is still heard.
// The position reports (`onPosition`) feed the server's `playback` messages, so what the user
// heard is stored exactly.

const PREBUFFER_S = 0.12; // wait this long before the first piece of a turn
const MIN_LEAD_S = 0.02; // never schedule closer to "now" than this
const REPORT_EVERY_MS = 250;
const DUCKED_GAIN = 0.15; // about -16 dB: clearly out of the way, not silent
const DUCK_TIME_S = 0.01; // gain time constant: quiet within ~30 ms, no click

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
    this.counts = { received: 0, played: 0, cut: 0, ducks: 0, resumes: 0 };
    this.gainNode = null;
    this.duckedTurn = null;
    this.timer = null;
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
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output(context));
    const now = context.currentTime;
    const first = this.nextTime === 0;
    const start = Math.max(this.nextTime, now + (first ? PREBUFFER_S : MIN_LEAD_S));
    const piece = { source, start, duration: buffer.duration, ended: false };
    source.onended = () => this.ended(piece);
    source.start(start);
    this.nextTime = start + buffer.duration;
    this.pieces.push(piece);
    this.counts.received += 1;
    this.turnPieces.push(piece);
    this.render("playing");
    this.ensureReports();
  }

  startTurn(turnId) {
    this.stopSources();
    this.turnId = turnId;
    this.turnPieces = [];
    this.nextTime = 0;
    this.setGain();
  }

  /** The node reply audio goes through (one per AudioContext): its gain does the ducking. */
  output(context) {
    if (!this.gainNode || this.gainNode.context !== context) {
      this.gainNode = context.createGain();
      this.gainNode.connect(context.destination);
      this.setGain(true);
    }
    return this.gainNode;
  }

  /** The user started to speak over this turn's reply: lower it now (it may not play yet). */
  duck(turnId) {
    if (this.cutTurns.has(turnId) || this.duckedTurn === turnId) return;
    this.duckedTurn = turnId;
    this.counts.ducks += 1;
    this.setGain();
    this.render(this.stats.dataset.state);
  }

  /** That speech was a backchannel or a noise: the reply plays on at full volume. */
  unduck(turnId) {
    if (this.duckedTurn !== turnId) return;
    this.duckedTurn = null;
    this.counts.resumes += 1;
    this.setGain();
    this.render(this.stats.dataset.state);
  }

  setGain(immediate = false) {
    const node = this.gainNode;
    if (!node) return;
    const target = this.ducked ? DUCKED_GAIN : 1;
    const now = node.context.currentTime;
    this.stats.dataset.gain = String(target);
    node.gain.cancelScheduledValues(now);
    if (immediate) node.gain.setValueAtTime(target, now);
    else node.gain.setTargetAtTime(target, now, DUCK_TIME_S);
  }

  get ducked() {
    return this.duckedTurn !== null && this.duckedTurn === this.turnId;
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
    if (turnId && turnId === this.duckedTurn) this.duckedTurn = null;
    if (turnId && turnId !== this.turnId) return;
    const had = this.pieces.length > 0;
    this.stopSources();
    if (had) this.counts.cut += 1;
    this.render(had ? "cut" : this.stats.dataset.state);
  }

  stopSources() {
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
    if (this.timer) this.report(true);
  }

  render(state) {
    const stats = this.stats;
    stats.dataset.state = state;
    stats.dataset.chunksReceived = String(this.counts.received);
    stats.dataset.chunksPlayed = String(this.counts.played);
    stats.dataset.cut = String(this.counts.cut);
    stats.dataset.ducked = String(this.ducked);
    stats.dataset.ducks = String(this.counts.ducks);
    stats.dataset.resumes = String(this.counts.resumes);
    stats.querySelector("#chunks-played").textContent =
      `${this.counts.played} / ${this.counts.received}`;
    this.renderPosition();
  }

  renderPosition() {
    const ms = Math.round(this.playedMs());
    this.stats.dataset.playedMs = String(ms);
    this.stats.querySelector("#played-time").textContent = `${(ms / 1000).toFixed(1)} s`;
  }
}
