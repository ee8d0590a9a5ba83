// Marks an <audio> element with its playback state (data-state: loading, playing, paused,
// ended, error) so people see it in the styles and tests can read it.
export function trackAudio(audio) {
  audio.dataset.state = "loading";
  audio.preload = "auto";
  audio.addEventListener("playing", () => (audio.dataset.state = "playing"));
  audio.addEventListener("pause", () => {
    if (!audio.ended) audio.dataset.state = "paused";
  });
  audio.addEventListener("ended", () => (audio.dataset.state = "ended"));
  audio.addEventListener("error", () => (audio.dataset.state = "error"));
  audio.addEventListener("loadedmetadata", () => {
    audio.dataset.duration = String(audio.duration);
  });
  return audio;
}

/** One recording at a time: starting any <audio> pauses the others (a voice sample and its
 * test synthesis never talk over each other). */
export function onePlayerAtATime(root = document) {
  root.addEventListener(
    "play",
    (event) => {
      for (const audio of root.querySelectorAll("audio")) {
        if (audio !== event.target && !audio.paused) audio.pause();
      }
    },
    true, // "play" does not bubble: listen on the way down
  );
}
