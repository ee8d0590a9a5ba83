// The System tab: each model slot and its state, RAM and per-GPU VRAM, preload and warmup.
import { $, el, clear, setWidth, formatMb, formatMs, formatSeconds } from "./dom.js";
import { api } from "./api.js";
import { onLanguageChange, t } from "./i18n.js";

function meter(used, total, label) {
  const fill = el("span", { class: "meter-fill" });
  setWidth(fill, total ? used / total : 0);
  return el(
    "div",
    { class: "usage" },
    el(
      "div",
      { class: "usage-head" },
      el("span", { text: label }),
      el("span", { class: "muted small", text: `${formatMb(used)} / ${formatMb(total)}` }),
    ),
    el(
      "div",
      {
        class: "meter",
        role: "img",
        "aria-label": `${label}: ${formatMb(used)} / ${formatMb(total)}`,
      },
      fill,
    ),
  );
}

/** "Speech recognition" for "stt": slot names in the interface language (the key as title). */
export function slotName(slot) {
  const key = `slot.${slot}`;
  const name = t(key);
  return name === key.split(".").pop() ? slot : name;
}

/** A TTS mode's state in words: available, not set up, or failing (with the engine's reason). */
function modeState(mode) {
  if (mode.available) return t("system.available");
  if (!mode.configured) return t("system.modeNotConfigured");
  return t("system.modeFailing", { reason: mode.reason });
}

/** Preload: how many models loaded now and how long that took, or that all were loaded. */
function resultSummary(kind, report, items, before) {
  if (kind !== "preload") return t("system.warmupDone", { s: formatSeconds(report.took_s) });
  const loadedNow = items.filter((item) => item.loaded && !before.has(item.slot)).length;
  if (!loadedNow) return t("system.preloadNothing");
  return t("system.preloadDone", { n: loadedNow, s: formatSeconds(report.took_s) });
}

export class System {
  constructor({ banner }) {
    this.banner = banner;
    $("#system-refresh").addEventListener("click", () => this.load());
    $("#preload").addEventListener("click", () => this.run("preload"));
    $("#warmup").addEventListener("click", () => this.run("warmup"));
    this.loadedBefore = new Set();
    onLanguageChange(() => this.lastResult && this.renderResult(...this.lastResult));
  }

  fail(error) {
    if (error.status !== 401) this.banner.show(error.describe(), "error");
  }

  async load() {
    const [status, info] = await Promise.allSettled([api.modelsStatus(), api.systemInfo()]);
    if (status.status === "fulfilled") this.renderModels(status.value);
    else this.fail(status.reason);
    if (info.status === "fulfilled") this.renderMachine(info.value);
    else this.fail(info.reason);
  }

  renderModels(status) {
    this.loadedBefore = new Set(
      Object.entries(status.slots || {})
        .filter(([, s]) => s.loaded)
        .map(([slot]) => slot),
    );
    const body = clear($("#model-table tbody"));
    for (const [slot, s] of Object.entries(status.slots || {})) {
      let state = "notLoaded";
      if (!s.configured) state = "notConfigured";
      else if (s.error) state = "error";
      else if (s.loaded) state = "loaded";
      const cell = (key, attrs, ...children) =>
        el("td", { ...attrs, dataset: { label: t(`system.${key}`) } }, ...children);
      body.append(
        el(
          "tr",
          { dataset: { slot, state } },
          el("th", { scope: "row", text: slotName(slot), title: slot }),
          cell(
            "engine",
            {},
            el("span", { text: s.engine || "–" }),
            s.model ? el("span", { class: "muted small block", text: s.model }) : null,
          ),
          cell(
            "state",
            {},
            el("span", { class: `badge ${state}`, text: t(`system.state.${state}`) }),
            s.error ? el("span", { class: "error-text small block", text: s.error }) : null,
          ),
          cell("device", { text: s.device || "–" }),
          cell("loadTime", { text: s.load_s == null ? "–" : formatSeconds(s.load_s) }),
          cell("memory", { text: formatMb(s.memory_mb) }),
          cell("lastLatency", { text: formatMs(s.last_latency_ms) }),
        ),
      );
    }
    const modes = Object.entries(status.tts_modes || {}).map(([mode, m]) =>
      t("system.ttsMode", {
        mode: t(`tts.${mode}`),
        state: modeState(m),
      }),
    );
    $("#tts-modes").textContent = [
      t("system.defaultTts", { mode: t(`tts.${status.default_tts_mode}`) }),
      ...modes,
    ].join(" · ");
  }

  renderMachine(info) {
    const root = clear($("#machine"));
    const mem = info.memory || {};
    const cpu = info.cpu || {};
    root.append(
      el(
        "dl",
        { class: "facts" },
        el("dt", { text: t("system.cpu") }),
        el("dd", {
          text: `${cpu.model || "?"} · ${t("system.cores", { n: cpu.logical_cores })} · ${cpu.load_pct ?? "–"} %`,
        }),
        el("dt", { text: t("system.process") }),
        el("dd", { text: formatMb(mem.process_rss_mb) }),
        el("dt", { text: t("system.sessions") }),
        el("dd", { text: `${info.sessions?.open ?? 0} / ${info.sessions?.max ?? "–"}` }),
        el("dt", { text: t("system.version") }),
        el("dd", { text: `AVATAR ${info.avatar_version} · Python ${info.python}` }),
        el("dt", { text: t("system.uptime") }),
        el("dd", { text: formatSeconds(info.uptime_s) }),
      ),
      meter((mem.total_mb || 0) - (mem.available_mb || 0), mem.total_mb, t("system.ram")),
    );
    const gpus = info.gpus || [];
    if (!gpus.length) root.append(el("p", { class: "muted small", text: t("system.noGpu") }));
    for (const gpu of gpus) {
      root.append(
        meter(gpu.used_mb, gpu.total_mb, t("system.vram", { i: gpu.index, name: gpu.name })),
      );
    }
  }

  async run(kind) {
    const buttons = [$("#preload"), $("#warmup")];
    buttons.forEach((b) => (b.disabled = true));
    const busy = $("#system-busy");
    const started = Date.now();
    const tick = () => {
      const s = ((Date.now() - started) / 1000).toFixed(0);
      $("#system-busy-text").textContent = t(`system.${kind}Running`, { s });
    };
    tick();
    busy.hidden = false;
    const timer = setInterval(tick, 500);
    const result = $("#system-result");
    try {
      const report = kind === "preload" ? await api.preload() : await api.warmup();
      this.renderResult(kind, report);
      await this.load();
    } catch (error) {
      result.hidden = false;
      result.dataset.kind = kind;
      result.replaceChildren(el("p", { class: "error-text", text: error.describe() }));
      this.fail(error);
    } finally {
      clearInterval(timer);
      busy.hidden = true;
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  /** The outcome of a preload or warm-up; `before` is the slots that were loaded already. */
  renderResult(kind, report, before = this.loadedBefore) {
    this.lastResult = [kind, report, before];
    const result = $("#system-result");
    const items = kind === "preload" ? report.slots || [] : report.steps || [];
    const rows = items.map((item) => {
      const ok = kind === "preload" ? item.loaded && !item.error : item.ok;
      const detail =
        kind === "preload"
          ? item.error ||
            (item.load_s == null || before.has(item.slot)
              ? t("system.alreadyLoaded")
              : formatSeconds(item.load_s))
          : item.error || formatMs(item.took_ms);
      return el(
        "li",
        { class: ok ? "ok" : "failed", dataset: { slot: item.slot } },
        el("span", { class: `badge ${ok ? "loaded" : "error"}`, text: ok ? "✓" : "✗" }),
        ` ${slotName(item.slot)}${item.engine ? ` (${item.engine})` : ""}: ${detail}`,
      );
    });
    result.hidden = false;
    result.dataset.kind = kind;
    result.replaceChildren(
      el("p", { text: resultSummary(kind, report, items, before) }),
      el("ul", { class: "result-list" }, rows),
    );
  }
}
