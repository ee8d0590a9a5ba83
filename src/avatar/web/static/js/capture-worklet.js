// AudioWorklet processor: microphone samples at the context rate in, 16 kHz mono s16le out.
// Low-pass (windowed sinc below the new Nyquist) then linear interpolation: enough for speech
// recognition, cheap enough for the audio thread. Posts one chunk every `chunkMs`, with its
// RMS level so the page can draw a meter. A "flush" message posts what is buffered now.

const TAPS = 31;

function lowpass(cutoff) {
  // cutoff: cycles per input sample (0..0.5); Blackman-windowed sinc, unit DC gain.
  const taps = new Float32Array(TAPS);
  const mid = (TAPS - 1) / 2;
  let sum = 0;
  for (let i = 0; i < TAPS; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const window =
      0.42 -
      0.5 * Math.cos((2 * Math.PI * i) / (TAPS - 1)) +
      0.08 * Math.cos((4 * Math.PI * i) / (TAPS - 1));
    taps[i] = sinc * window;
    sum += taps[i];
  }
  for (let i = 0; i < TAPS; i++) taps[i] /= sum;
  return taps;
}

class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.outRate = opts.targetRate || 16000;
    this.step = sampleRate / this.outRate; // input samples per output sample
    this.taps = this.step > 1 ? lowpass((0.45 * this.outRate) / sampleRate) : null;
    this.history = new Float32Array(TAPS * 2); // each sample stored twice: no modulo in the loop
    this.at = 0;
    this.prev = 0;
    this.frac = 0; // position of the next output sample after `prev`, in input samples
    this.chunk = new Int16Array(Math.round((this.outRate * (opts.chunkMs || 100)) / 1000));
    this.filled = 0;
    this.energy = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "flush") this.post(true);
      else if (event.data === "stop") this.running = false;
    };
  }

  filter(x) {
    if (!this.taps) return x;
    this.at = (this.at + 1) % TAPS;
    this.history[this.at] = x;
    this.history[this.at + TAPS] = x;
    // history[at + 1 .. at + TAPS] holds the last TAPS samples, oldest first
    let y = 0;
    const base = this.at + 1;
    for (let k = 0; k < TAPS; k++) y += this.taps[k] * this.history[base + k];
    return y;
  }

  emit(value) {
    const clamped = Math.max(-1, Math.min(1, value));
    this.chunk[this.filled++] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    this.energy += clamped * clamped;
    if (this.filled === this.chunk.length) this.post(false);
  }

  post(flush) {
    if (this.filled === 0) {
      if (flush) this.port.postMessage({ pcm: new ArrayBuffer(0), level: 0, flush: true });
      return;
    }
    const pcm = this.chunk.slice(0, this.filled).buffer;
    const level = Math.sqrt(this.energy / this.filled);
    this.port.postMessage({ pcm, level, flush }, [pcm]);
    this.filled = 0;
    this.energy = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!this.running) return false;
    if (!input || input.length === 0) return true;
    const channels = input.length;
    const frames = input[0].length;
    for (let i = 0; i < frames; i++) {
      let x = input[0][i];
      if (channels > 1) {
        for (let c = 1; c < channels; c++) x += input[c][i];
        x /= channels;
      }
      const cur = this.filter(x);
      while (this.frac <= 1) {
        this.emit(this.prev + (cur - this.prev) * this.frac);
        this.frac += this.step;
      }
      this.frac -= 1;
      this.prev = cur;
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
