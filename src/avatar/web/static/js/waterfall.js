// The per-turn latency waterfall, drawn with DOM bars whose offset and width are set through
// CSSOM (element.style), which the CSP allows (no inline style markup anywhere).
import { el, clear } from "./dom.js";
import { t } from "./i18n.js";

/**
 * Stages on one time axis starting at the end of the user's speech. `endpointing_ms` and
 * `stt_ms` are durations; the others are times since the end of speech (docs/PROTOCOL.md).
 */
const DURATIONS = new Set(["endpointing_ms", "stt_ms"]);

/** 850 ms, 6.5 s: short enough for the narrow value column. */
export function formatLatency(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

function stages(m) {
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const endpointing = num(m.endpointing_ms);
  const stt = num(m.stt_ms);
  const sttStart = endpointing ?? 0;
  const sttEnd = stt !== null ? sttStart + stt : null;
  const llm = num(m.llm_first_token_ms);
  const text = num(m.first_text_ms);
  const tts = num(m.tts_first_audio_ms);
  const v2v = num(m.voice_to_voice_ms);
  const rows = [
    ["endpointing_ms", "metric.endpointing", 0, endpointing, endpointing],
    ["stt_ms", "metric.stt", sttStart, sttEnd, stt],
    ["llm_first_token_ms", "metric.llm", sttEnd ?? 0, llm, llm],
    ["first_text_ms", "metric.firstText", llm ?? 0, text, text],
    ["tts_first_audio_ms", "metric.tts", text ?? 0, tts, tts],
    ["voice_to_voice_ms", "metric.v2v", 0, v2v, v2v],
  ];
  return rows
    .filter(([, , , end]) => end !== null)
    .map(([key, label, start, end, value]) => ({
      key,
      label,
      start: Math.min(start, end),
      end,
      value,
      kind: DURATIONS.has(key) ? "took" : "at",
    }));
}

/** Draws the metrics of one turn into `container`; returns the number of rows drawn. */
export function renderWaterfall(container, metrics = {}) {
  clear(container);
  const rows = stages(metrics);
  container.dataset.rows = String(rows.length);
  if (!rows.length) {
    container.append(el("p", { class: "muted small", text: t("talk.latencyNone") }));
    return 0;
  }
  const span = Math.max(...rows.map((r) => r.end), 1);
  let group = null;
  for (const row of rows) {
    if (row.kind !== group) {
      group = row.kind;
      container.append(el("p", { class: "wf-group small", text: t(`wf.group.${group}`) }));
    }
    const bar = el("span", { class: `wf-bar wf-${row.key.replace(/_ms$/, "")}` });
    bar.style.left = `${(row.start / span) * 100}%`;
    bar.style.width = `${Math.max(((row.end - row.start) / span) * 100, 0.8)}%`;
    container.append(
      el(
        "div",
        { class: "wf-row", dataset: { metric: row.key, ms: String(Math.round(row.value)) } },
        el("span", { class: "wf-label", text: t(row.label) }),
        el("span", { class: "wf-track" }, bar),
        el("span", {
          class: "wf-value",
          text: t(`wf.${row.kind}`, { v: formatLatency(row.value) }),
        }),
      ),
    );
  }
  container.append(el("p", { class: "muted small wf-note", text: t("talk.latencyNote") }));
  return rows.length;
}

/** A compact one-line summary of the same metrics (history turns). */
export function metricChips(metrics = {}) {
  return stages(metrics).map((row) =>
    el(
      "span",
      { class: "chip", dataset: { metric: row.key } },
      `${t(row.label)} ${t(`wf.${row.kind}`, { v: formatLatency(row.value) })}`,
    ),
  );
}
