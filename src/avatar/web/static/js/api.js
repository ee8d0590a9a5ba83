// The REST client. The browser sends the HttpOnly login cookie by itself (same origin); no
// script ever sees the token. Errors are the server's problem+json, kept as ApiError.
import { t } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, body = {}, retryAfter = null) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || (status === 0 ? "network" : "error");
    this.hint = body.hint || "";
    this.retryAfter = retryAfter;
  }

  /** A sentence for people: the server's message and hint, or what a network failure means. */
  describe() {
    if (this.status === 0) return t("error.network");
    if (this.status === 429) return t("error.rateLimited", { s: this.retryAfter || "60" });
    return this.hint ? `${this.message} — ${this.hint}` : this.message;
  }
}

/** Fired on window when any call answers 401: the UI shows the login panel. */
export const UNAUTHORIZED = "avatar:unauthorized";

async function call(method, path, { query, json, form, accept } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") params.set(key, value);
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  const init = { method, headers: {}, credentials: "same-origin", cache: "no-store" };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  if (accept) init.headers.Accept = accept;
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0);
  }
  if (response.ok) return response;
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = {};
  }
  if (response.status === 401) window.dispatchEvent(new CustomEvent(UNAUTHORIZED));
  throw new ApiError(response.status, body, response.headers.get("Retry-After"));
}

export async function getJson(path, query) {
  return (await call("GET", path, { query })).json();
}

export async function sendJson(method, path, json, query) {
  const response = await call(method, path, { json, query });
  return response.status === 204 ? null : response.json();
}

export async function postJson(path, query) {
  return (await call("POST", path, { query })).json();
}

export async function postForm(path, form) {
  return call("POST", path, { form });
}

export async function remove(path) {
  await call("DELETE", path);
}

export async function postForBlob(path, { query, form } = {}) {
  const response = await call("POST", path, { query, form });
  return { blob: await response.blob(), headers: response.headers };
}

/** The file name of a Content-Disposition header, or a fallback. */
export function filenameOf(headers, fallback) {
  const value = headers.get("Content-Disposition") || "";
  const match = /filename="?([^";]+)"?/i.exec(value);
  return match ? match[1] : fallback;
}

// The endpoints the UI uses, in one place.
export const api = {
  voiceProfiles: (page = 1, pageSize = 100) =>
    getJson("/api/voice-profiles", { page, page_size: pageSize }),
  createVoiceProfile: async (form) => (await postForm("/api/voice-profiles", form)).json(),
  updateVoiceProfile: (id, fields) =>
    sendJson("PUT", `/api/voice-profiles/${encodeURIComponent(id)}`, fields),
  deleteVoiceProfile: (id) => remove(`/api/voice-profiles/${encodeURIComponent(id)}`),
  testVoiceProfile: (id, form) =>
    postForBlob(`/api/voice-profiles/${encodeURIComponent(id)}/test`, { form }),
  sessions: (page = 1, pageSize = 20) =>
    getJson("/api/conversations/sessions", { page, page_size: pageSize }),
  search: (query, page = 1) =>
    getJson("/api/conversations/sessions/search", { query, page, page_size: 50 }),
  session: (id) => getJson(`/api/conversations/${encodeURIComponent(id)}`),
  exportSession: (id, format) =>
    postForBlob(`/api/conversations/${encodeURIComponent(id)}/export`, { query: { format } }),
  deleteSession: (id) => remove(`/api/conversations/${encodeURIComponent(id)}`),
  systemInfo: () => getJson("/api/system/info"),
  modelsStatus: () => getJson("/api/system/models/status"),
  preload: () => postJson("/api/system/models/preload"),
  warmup: () => postJson("/api/system/models/warmup"),
};
