// A tiny REST client of Jetway on Node's built-in fetch (Node 18+): no
// dependencies, so a function bundle is just these files.
'use strict';

const base = (process.env.JETWAY_HTTP_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
const apiKey = process.env.JETWAY_API_KEY || '';

// request sends body as JSON and answers the decoded response; a refusal
// throws an Error carrying the HTTP status and the ErrorInfo reason.
async function request(method, path, body, timeoutMs = 15000) {
  const headers = { 'Content-Type': 'application/json' };
  if (apiKey) headers.Authorization = `ApiKey ${apiKey}`;
  const res = await fetch(base + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : {};
  if (!res.ok) {
    const info = (json.details || []).find((d) => d['@type'] === 'type.googleapis.com/google.rpc.ErrorInfo');
    const err = new Error(`${method} ${path}: HTTP ${res.status} ${info ? info.reason : ''}: ${json.message || text}`);
    err.status = res.status;
    err.reason = info ? info.reason : '';
    throw err;
  }
  return json;
}

module.exports = { request, post: (path, body, t) => request('POST', path, body, t) };
