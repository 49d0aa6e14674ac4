// A tiny REST client of Jetway on Node's built-in fetch (Node 18+): no
// dependencies, so a function bundle is just these files.
'use strict';

const base = (process.env.JETWAY_HTTP_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');

// apiKey is the Authorization of JETWAY_API_KEY ('' when unset: no auth).
function apiKey() {
  return process.env.JETWAY_API_KEY ? `ApiKey ${process.env.JETWAY_API_KEY}` : '';
}

// accessTokenOrKey prefers JETWAY_ACCESS_TOKEN (a short-lived jwy_ token
// narrowed to what the function does) over the API key.
function accessTokenOrKey() {
  return process.env.JETWAY_ACCESS_TOKEN ? `Bearer ${process.env.JETWAY_ACCESS_TOKEN}` : apiKey();
}

// client answers post(path, body), which sends body as JSON with the
// given Authorization and answers the decoded response; a refusal throws
// an Error carrying the HTTP status and the ErrorInfo reason.
function client(authorization) {
  return async function post(path, body, timeoutMs = 15000) {
    const headers = { 'Content-Type': 'application/json' };
    if (authorization) headers.Authorization = authorization;
    const res = await fetch(base + path, {
      method: 'POST', headers, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let json = {};
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      json = { message: text };
    }
    if (!res.ok) {
      const info = (json.details || []).find((d) => d['@type'] === 'type.googleapis.com/google.rpc.ErrorInfo');
      const reason = info ? info.reason : '';
      const err = new Error(`POST ${path}: HTTP ${res.status} ${reason}: ${json.message || text}`);
      err.status = res.status;
      err.reason = reason;
      throw err;
    }
    return json;
  };
}

module.exports = { client, apiKey, accessTokenOrKey };
