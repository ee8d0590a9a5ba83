// One stored turn in the History tab: both sides with their audio, the whole reply and, for
// an interrupted turn, what was heard (text, and how far into the reply audio), and its timings.
import { el, formatDate, formatSeconds } from "./dom.js";
import { t } from "./i18n.js";
import { metricChips } from "./waterfall.js";
import { trackAudio } from "./media.js";

/** "Heard 1.2 s of 4.0 s: …" under an interrupted turn's whole reply. */
function heardNote(turn) {
  const when =
    turn.heard_ms != null && turn.assistant_audio_s != null
      ? t("history.heardAt", {
          heard: formatSeconds(turn.heard_ms / 1000),
          whole: formatSeconds(turn.assistant_audio_s),
        })
      : "";
  return el(
    "p",
    { class: "heard small", dataset: { heardMs: turn.heard_ms ?? "" } },
    t("history.heard", { when, text: turn.heard_text || "–" }),
  );
}

export function turnItem(turn) {
  const side = (role, text, url, seconds) =>
    el(
      "div",
      { class: `turn-side ${role}` },
      el("span", { class: "who", text: t(`history.role.${role}`) }),
      el("p", { class: "msg-text", text: text || "–" }),
      url ? playButton(url, role, seconds) : null,
    );
  const badges = [
    turn.interrupted ? el("span", { class: "badge warn", text: t("history.cut") }) : null,
    turn.tts_mode ? el("span", { class: "badge", text: t(`tts.${turn.tts_mode}`) }) : null,
  ];
  return el(
    "li",
    { class: "turn", dataset: { turn: turn.index } },
    el(
      "div",
      { class: "turn-head" },
      el("strong", { text: t("history.turn", { n: turn.index }) }),
      el("span", { class: "muted small", text: formatDate(turn.created_at) }),
      badges,
    ),
    side("user", turn.user_text, turn.user_audio_url, turn.user_audio_s),
    side("assistant", turn.assistant_text, turn.assistant_audio_url, turn.assistant_audio_s),
    turn.interrupted ? heardNote(turn) : null,
    el("div", { class: "chips" }, metricChips(turn.metrics || {})),
  );
}

function playButton(url, role, seconds) {
  const holder = el("div", { class: "play-holder" });
  const label = t(`history.play.${role}`) + (seconds ? ` (${formatSeconds(seconds)})` : "");
  const button = el(
    "button",
    { type: "button", class: "btn small", dataset: { play: role } },
    label,
  );
  button.addEventListener("click", () => {
    const audio = trackAudio(el("audio", { controls: true, src: url, dataset: { role } }));
    holder.replaceChildren(audio);
    audio.play().catch(() => {});
    audio.focus();
  });
  holder.append(button);
  return holder;
}
