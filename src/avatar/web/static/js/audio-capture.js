// Microphone capture: getUserMedia (echo cancellation, noise suppression, gain control on)
// into the capture worklet, which hands back 32 ms chunks of 16 kHz mono s16le PCM.

const WORKLET_URL = "/js/capture-worklet.js";
const loaded = new WeakSet();

/** Why the microphone could not start, as a stable reason the UI translates. */
export class MicError extends Error {
  constructor(reason, cause) {
    super(reason);
    this.reason = reason; // denied | no_device | busy | insecure | failed
    this.cause = cause;
  }
}

function reasonOf(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "denied";
    case "NotFoundError":
    case "OverconstrainedError":
      return "no_device";
    case "NotReadableError":
    case "AbortError":
      return "busy";
    default:
      return "failed";
  }
}

export class Microphone {
  /** onChunk(ArrayBuffer pcm, number level, boolean flushed) is called for every chunk. */
  constructor(context, onChunk) {
    this.context = context;
    this.onChunk = onChunk;
    this.stream = null;
    this.node = null;
    this.source = null;
    this.flushWaiters = [];
  }

  get active() {
    return this.stream !== null;
  }

  async start() {
    if (this.active) return;
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
      throw new MicError("insecure");
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: {
          channelCount: 1,
          echoCancellation: true,
          noiseSuppression: true,
          autoGainControl: true,
        },
      });
    } catch (error) {
      throw new MicError(reasonOf(error), error);
    }
    try {
      if (!loaded.has(this.context)) {
        await this.context.audioWorklet.addModule(WORKLET_URL);
        loaded.add(this.context);
      }
      this.source = this.context.createMediaStreamSource(stream);
      this.node = new AudioWorkletNode(this.context, "pcm-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        // 32 ms: one VAD frame. The server learns the user stopped talking within a frame of it
        // (a 100 ms chunk made it wait up to 100 ms more); 31 small binary frames a second.
        processorOptions: { targetRate: 16000, chunkMs: 32 },
      });
      this.node.port.onmessage = (event) => this.receive(event.data);
      this.source.connect(this.node);
      // The node writes silence; connecting it keeps the graph pulling it in every browser.
      this.node.connect(this.context.destination);
    } catch (error) {
      stream.getTracks().forEach((track) => track.stop());
      throw new MicError("failed", error);
    }
    this.stream = stream;
    stream.getTracks().forEach((track) => track.addEventListener("ended", () => this.stop()));
  }

  receive({ pcm, level, flush }) {
    if (pcm.byteLength) this.onChunk(pcm, level);
    if (flush) {
      const waiters = this.flushWaiters;
      this.flushWaiters = [];
      waiters.forEach((resolve) => resolve());
    }
  }

  /** Resolves once the worklet has handed over the samples it was holding. */
  flush() {
    if (!this.node) return Promise.resolve();
    return new Promise((resolve) => {
      this.flushWaiters.push(resolve);
      this.node.port.postMessage("flush");
      setTimeout(resolve, 300); // never hang a release on a stalled audio thread
    });
  }

  stop() {
    if (!this.stream) return;
    this.stream.getTracks().forEach((track) => track.stop());
    this.node?.port.postMessage("stop");
    this.source?.disconnect();
    this.node?.disconnect();
    this.stream = null;
    this.node = null;
    this.source = null;
    this.flushWaiters.forEach((resolve) => resolve());
    this.flushWaiters = [];
  }
}
