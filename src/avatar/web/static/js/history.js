// The History tab: sessions, full-text search with highlighted hits, turns with their audio
// and metrics, export, delete. Only the search snippets are HTML (escaped by the server, with
// <mark> around the hits); they are rebuilt from text and <mark> alone before insertion.
import { $, el, clear, confirmDialog, download, formatDate } from "./dom.js";
import { api, filenameOf } from "./api.js";
import { languageName, t } from "./i18n.js";
import { turnItem } from "./history-turn.js";

/** The snippet's text and <mark> elements, and nothing else. */
export function snippetNodes(html) {
  const template = document.createElement("template");
  template.innerHTML = html; // inert: nothing in a template runs or loads
  return [...template.content.childNodes].map((node) =>
    node.nodeName === "MARK"
      ? el("mark", { text: node.textContent })
      : document.createTextNode(node.textContent),
  );
}

export class History {
  constructor({ banner }) {
    this.banner = banner;
    this.page = 1;
    this.current = null;
    this.bind();
  }

  bind() {
    $("#search-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.search($("#search-input").value.trim());
    });
    $("#search-clear").addEventListener("click", () => {
      $("#search-input").value = "";
      $("#search-results").hidden = true;
    });
    $("#sessions-refresh").addEventListener("click", () => this.load());
    $("#sessions-more").addEventListener("click", () => this.load(this.page + 1));
    for (const button of document.querySelectorAll("[data-export]")) {
      button.addEventListener("click", () => this.exportAs(button.dataset.export, button));
    }
    $("#session-delete").addEventListener("click", () => this.remove());
  }

  fail(error) {
    if (error.status !== 401) this.banner.show(error.describe(), "error");
  }

  /** An error about the lists, shown beside them (the banner belongs to the connection). */
  listError(error) {
    const node = $("#history-error");
    node.hidden = !error;
    if (!error) return;
    const unreachable = !error.status || error.status >= 500;
    node.textContent = unreachable ? t("history.unreachable") : error.describe();
  }

  async load(page = 1) {
    let result;
    try {
      result = await api.sessions(page);
    } catch (error) {
      if (error.status !== 401) this.listError(error); // the list so far stays as it was
      return;
    }
    this.listError(null);
    this.page = page;
    const list = $("#session-list");
    if (page === 1) clear(list);
    for (const s of result.items) {
      const button = el(
        "button",
        { type: "button", class: "session-item", dataset: { id: s.id } },
        el("span", { class: "session-title", text: s.title || t("history.untitled") }),
        el("span", {
          class: "muted small",
          text: `${formatDate(s.updated_at)} · ${t("history.turns", { n: s.turn_count })}`,
        }),
      );
      button.addEventListener("click", () => this.open(s.id));
      list.append(el("li", {}, button));
    }
    $("#sessions-empty").hidden = result.total > 0;
    $("#sessions-more").hidden = page >= result.pages;
    this.markCurrent();
  }

  /** Draw again (after a language change): the list, and the open session if any. */
  async refresh() {
    await this.load();
    if (this.current) await this.open(this.current.id);
  }

  markCurrent() {
    for (const node of document.querySelectorAll(".session-item")) {
      node.setAttribute("aria-current", String(node.dataset.id === this.current?.id));
    }
  }

  async search(query) {
    if (!query) return;
    let result;
    try {
      result = await api.search(query);
    } catch (error) {
      if (error.status !== 401) this.listError(error);
      return;
    }
    this.listError(null);
    const list = clear($("#hit-list"));
    $("#search-results").hidden = false;
    if (!result.items.length) {
      list.append(el("li", { class: "muted", text: t("history.noHits", { q: query }) }));
    }
    for (const hit of result.items) {
      const button = el(
        "button",
        { type: "button", class: "hit", dataset: { session: hit.session_id, turn: hit.turn } },
        el("span", {
          class: `role ${hit.role}`,
          text: `${t(`history.role.${hit.role}`)} · ${t("history.turn", { n: hit.turn })}`,
        }),
        el("span", { class: "snippet" }, snippetNodes(hit.snippet)),
        el("span", { class: "muted small", text: formatDate(hit.created_at) }),
      );
      button.addEventListener("click", () => this.open(hit.session_id, hit.turn));
      list.append(el("li", {}, button));
    }
  }

  async open(id, turn = null) {
    let session;
    try {
      session = await api.session(id);
    } catch (error) {
      if (error.status === 404) this.forget(id);
      else if (error.status !== 401) this.listError(error);
      return;
    }
    this.current = session;
    this.markCurrent();
    $("#detail-empty").hidden = true;
    $("#detail-body").hidden = false;
    $("#detail-title").textContent = session.title || t("history.untitled");
    $("#detail-meta").textContent = [
      formatDate(session.created_at),
      t("history.turns", { n: session.turn_count }),
      session.language ? t("history.language", { lang: languageName(session.language) }) : null,
    ]
      .filter(Boolean)
      .join(" · ");
    const list = clear($("#turn-list"));
    for (const item of session.turns) list.append(turnItem(item));
    const target = turn && list.querySelector(`[data-turn="${turn}"]`);
    if (target) {
      target.classList.add("target");
      target.scrollIntoView({ block: "center" });
      target.querySelector("button")?.focus({ preventScroll: true });
    } else {
      $("#detail-title").scrollIntoView({ block: "nearest" });
    }
  }

  async exportAs(format, button) {
    if (!this.current) return;
    button.disabled = true;
    try {
      const { blob, headers } = await api.exportSession(this.current.id, format);
      const ext = { json: "json", markdown: "md", zip: "zip" }[format];
      download(blob, filenameOf(headers, `avatar-${this.current.id}.${ext}`));
    } catch (error) {
      this.fail(error);
    } finally {
      button.disabled = false;
    }
  }

  async remove() {
    const session = this.current;
    if (!session) return;
    const name = session.title || session.id;
    if (!(await confirmDialog(t("history.confirmDelete", { name })))) return;
    try {
      await api.deleteSession(session.id);
    } catch (error) {
      this.fail(error);
      return;
    }
    this.forget(session.id);
    await this.load();
  }

  /** A session that is gone: its detail closes and its search hits go. */
  forget(id) {
    for (const hit of document.querySelectorAll(
      `#hit-list .hit[data-session="${CSS.escape(id)}"]`,
    )) {
      hit.closest("li").remove();
    }
    const hits = $("#hit-list");
    if (!$("#search-results").hidden && !hits.children.length) {
      hits.append(el("li", { class: "muted", text: t("history.noHitsLeft") }));
    }
    if (this.current?.id === id) {
      this.current = null;
      $("#detail-body").hidden = true;
      $("#detail-empty").hidden = false;
    }
  }
}
