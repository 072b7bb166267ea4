// The browser consumer app, the same source for every bundler. Query parameters: workerUrl (passed
// as backendOptions.workerUrl), webgl=off (do not register the optional webgl backend).
import { webglBackend } from '@qkv/backend-webgl';
import * as qkv from 'qkv';
import { checkBackends } from './check.mjs';

const params = new URLSearchParams(location.search);
if (params.get('webgl') !== 'off') qkv.registerBackend(webglBackend);
const workerUrl = params.get('workerUrl');
window.__qkv = checkBackends(qkv, workerUrl ? { workerUrl } : undefined).then(
  (r) => ({ ok: true, isolated: globalThis.crossOriginIsolated === true, ...r }),
  (e) => ({ ok: false, error: String(e?.stack ?? e) }),
);
