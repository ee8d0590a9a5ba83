// One voice profile as a card: its quality report and warnings, the stored sample, and a test
// synthesis that says which voice really spoke (X-Avatar-Voice, X-Avatar-Voice-Cloned).
import { el, formatDate, formatSeconds } from "./dom.js";
import { api, ApiError } from "./api.js";
import { t } from "./i18n.js";
import { trackAudio } from "./media.js";

const num = (v, digits = 1) => (typeof v === "number" ? v.toFixed(digits) : "–");

function qualityReport(p) {
  const q = p.quality || {};
  const unit = t(`voices.unit.${q.accuracy_unit || "word"}`);
  const accuracy =
    typeof q.transcript_accuracy === "number"
      ? `${Math.round(q.transcript_accuracy * 100)} % (${unit})`
      : "–";
  const clipping = typeof q.clipping_ratio === "number" ? num(q.clipping_ratio * 100, 2) : "–";
  const speech = `${t("voices.q.speech")} ${formatSeconds(q.speech_duration_s)}`;
  const rows = [
    [t("voices.q.duration"), `${formatSeconds(p.duration_s)} (${speech})`],
    [t("voices.q.level"), `${num(q.level_dbfs)} dBFS`],
    [t("voices.q.peak"), `${num(q.peak_dbfs)} dBFS · ${t("voices.q.clipping")} ${clipping} %`],
    [t("voices.q.snr"), `${num(q.snr_db)} dB`],
    [t("voices.q.accuracy"), accuracy],
    [t("voices.q.transcript"), q.transcript || "–"],
  ];
  return el(
    "dl",
    { class: "quality" },
    rows.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]),
  );
}

/** The string for `key` in the interface language, or null when there is none. */
function known(key) {
  const text = t(key);
  return text === key.split(".").pop() ? null : text;
}

/** The server's warnings, in the interface language where their code is known (the figures
 * they name are in the report above). */
function warningList(p) {
  const warnings = p.warnings || [];
  if (!warnings.length) return el("p", { class: "ok-text small", text: t("voices.noWarnings") });
  return el(
    "ul",
    { class: "warnings" },
    warnings.map((w) =>
      el(
        "li",
        { class: "warning", dataset: { code: w.code } },
        el("strong", { text: known(`voices.warn.${w.code}`) ?? w.message }),
        ` ${known(`voices.fix.${w.code}`) ?? w.hint ?? ""}`,
      ),
    ),
  );
}

function button(label, onclick, kind = "") {
  return el("button", { type: "button", class: `btn small ${kind}`, text: label, onclick });
}

function testControls(p) {
  const text = el("input", {
    type: "text",
    maxlength: 500,
    "aria-label": t("voices.testText"),
    value: t("voices.testSentence"),
  });
  const result = el("p", { class: "test-result small", "aria-live": "polite" });
  const go = button(t("voices.test"), () => testSynthesis(p, text.value, result, go));
  return [el("div", { class: "test-row" }, text, go), result];
}

export function profileCard(p, { onEdit, onDelete }) {
  const status = p.engine_status === "cloning_ready" ? "cloning" : "packaged";
  const sample = el("div", { class: "sample" });
  const playSample = () => {
    const audio = trackAudio(el("audio", { controls: true, src: p.audio_url }));
    sample.replaceChildren(audio);
    audio.play().catch(() => {});
  };
  const reference = p.reference_text
    ? el(
        "p",
        { class: "reference small" },
        el("span", { class: "muted", text: `${t("voices.referenceShort")}${t("app.colon")}` }),
        p.reference_text,
      )
    : null;
  return el(
    "li",
    { class: "voice-card", dataset: { id: p.id } },
    el(
      "div",
      { class: "card-head wrap" },
      el("h3", { text: p.name }),
      el("span", { class: `badge ${status}`, text: t(`voices.status.${status}`) }),
    ),
    p.description ? el("p", { class: "muted", text: p.description }) : null,
    reference,
    qualityReport(p),
    warningList(p),
    el(
      "div",
      { class: "row wrap" },
      button(t("voices.play"), playSample),
      button(t("voices.editButton"), () => onEdit(p), "ghost"),
      button(t("app.delete"), () => onDelete(p), "danger"),
    ),
    sample,
    testControls(p),
    el("p", {
      class: "muted small",
      text: t("voices.created", { date: formatDate(p.created_at) }),
    }),
  );
}

async function testSynthesis(profile, text, result, go) {
  if (!text.trim()) return;
  go.disabled = true;
  result.textContent = t("voices.testing");
  const form = new FormData();
  form.set("text", text.trim()); // the server picks the language from the text's script
  try {
    const { blob, headers } = await api.testVoiceProfile(profile.id, form);
    const cloned = headers.get("X-Avatar-Voice-Cloned") === "true";
    const voice = headers.get("X-Avatar-Voice") || "?";
    const previous = result.querySelector("audio");
    if (previous) URL.revokeObjectURL(previous.src);
    result.replaceChildren(
      el("span", {
        class: `badge ${cloned ? "cloning" : "packaged"}`,
        text: cloned ? t("voices.cloned") : t("voices.notCloned"),
      }),
      " ",
      el("span", { text: t("voices.spokeWith", { voice }) }),
      cloned ? null : el("span", { class: "why block", text: t("voices.whyNotCloned") }),
    );
    result.dataset.voice = voice;
    result.dataset.cloned = String(cloned);
    const audio = trackAudio(el("audio", { controls: true }));
    audio.src = URL.createObjectURL(blob);
    result.append(audio);
    audio.play().catch(() => {});
  } catch (error) {
    result.textContent = error instanceof ApiError ? error.describe() : String(error);
  } finally {
    go.disabled = false;
  }
}
