// Records a voice reference in the browser: MediaRecorder → WebM/Opus (the server decodes it).
// Voice processing is off: a cloning reference should sound like the person, not the filter.
const MAX_SECONDS = 60;

function pickType() {
  const types = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus"];
  return types.find((type) => window.MediaRecorder?.isTypeSupported?.(type)) || "";
}

export class Recorder {
  constructor({ onTick, onDone, onError }) {
    this.onTick = onTick;
    this.onDone = onDone;
    this.onError = onError;
    this.recorder = null;
    this.seconds = 0;
  }

  async start() {
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia || !window.MediaRecorder) {
      this.onError("insecure");
      return false;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: {
          channelCount: 1,
          echoCancellation: false,
          noiseSuppression: false,
          autoGainControl: false,
        },
      });
    } catch (error) {
      this.onError(error?.name === "NotAllowedError" ? "denied" : "failed");
      return false;
    }
    const type = pickType();
    const recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
    const parts = [];
    recorder.ondataavailable = (e) => e.data.size && parts.push(e.data);
    recorder.onstop = () => {
      stream.getTracks().forEach((track) => track.stop());
      clearInterval(this.timer);
      this.recorder = null;
      this.onDone(new Blob(parts, { type: recorder.mimeType || "audio/webm" }));
    };
    this.seconds = 0;
    this.onTick(0);
    this.timer = setInterval(() => {
      this.seconds += 1;
      this.onTick(this.seconds);
      if (this.seconds >= MAX_SECONDS) this.stop();
    }, 1000);
    recorder.start(250);
    this.recorder = recorder;
    return true;
  }

  stop() {
    if (this.recorder && this.recorder.state !== "inactive") this.recorder.stop();
  }
}
