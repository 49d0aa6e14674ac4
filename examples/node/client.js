// A Node gRPC client of Jetway: create a stream, publish to it, consume
// it with Subscribe (a server stream) from a durable consumer, ack what
// arrived, then make a call the bridge refuses and decode the refusal's
// google.rpc.Status details (ErrorInfo) from the grpc-status-details-bin
// trailer.
//
// Environment:
//   JETWAY_GRPC_ADDR  the bridge's gRPC address (default 127.0.0.1:9090)
//   JETWAY_API_KEY    an API key, sent as "authorization: ApiKey <key>"
//                     (unset: no credentials, for a bridge without auth)
//   JETWAY_STREAM     the stream to use (default EXAMPLE_NODE; its
//                     subjects are <stream in lower case>.>)
//   JETWAY_COUNT      how many messages to publish and consume (default 5)
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const addr = process.env.JETWAY_GRPC_ADDR || '127.0.0.1:9090';
const apiKey = process.env.JETWAY_API_KEY || '';
const stream = process.env.JETWAY_STREAM || 'EXAMPLE_NODE';
const count = Number(process.env.JETWAY_COUNT || 5);
const prefix = stream.toLowerCase();
const durable = 'worker';

// The contract is loaded at run time from the repository's proto/; the
// google/protobuf well-known types come with protobufjs. keepCase keeps
// the proto field names (stream_sequence, ack_token), as REST JSON has
// them.
const protoRoot = path.join(__dirname, '..', '..', 'proto');
const examplesProto = path.join(__dirname, '..', 'proto');
const loadOptions = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [protoRoot, examplesProto] };
const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(
  ['jetway/v1/message.proto', 'jetway/v1/admin.proto'], loadOptions));
const v1 = pkg.jetway.v1;

// google.rpc.Status and its detail types, for decoding refusals.
const rpcRoot = new protobuf.Root();
rpcRoot.resolvePath = (origin, target) => {
  for (const dir of [examplesProto, protoRoot]) {
    const p = path.join(dir, target);
    if (require('node:fs').existsSync(p)) return p;
  }
  return protobuf.util.path.resolve(origin, target);
};
rpcRoot.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
const Status = rpcRoot.lookupType('google.rpc.Status');

const creds = grpc.credentials.createInsecure();
const admin = new v1.AdminService(addr, creds);
const messages = new v1.MessageService(addr, creds);

function metadata() {
  const md = new grpc.Metadata();
  if (apiKey) md.set('authorization', `ApiKey ${apiKey}`);
  return md;
}

// call turns a unary method into a promise, with a deadline.
function call(client, method, req, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    client[method](req, metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

// describe prints a gRPC error with the details of its
// grpc-status-details-bin trailer: the code, then each detail.
function describe(err) {
  const lines = [`refused: ${grpc.status[err.code]} ${err.details}`];
  const bins = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (bins.length === 0) return lines.concat('  (no grpc-status-details-bin trailer)');
  const st = Status.decode(bins[0]);
  for (const any of st.details) {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    let type;
    try {
      type = rpcRoot.lookupType(typeName);
    } catch {
      lines.push(`  detail ${typeName} (not decoded)`);
      continue;
    }
    const detail = type.toObject(type.decode(any.value), { longs: String, defaults: true });
    if (typeName === 'google.rpc.ErrorInfo') {
      lines.push(`  ErrorInfo reason=${detail.reason} domain=${detail.domain}`);
    } else {
      lines.push(`  ${typeName} ${JSON.stringify(detail)}`);
    }
  }
  return lines;
}

// subscribe consumes n messages from the durable consumer (creating it,
// explicit acks) and acks each batch of them by token, confirmed.
function subscribe(n) {
  return new Promise((resolve, reject) => {
    const got = [];
    const s = messages.Subscribe({
      stream, consumer: durable, format: 'PAYLOAD_FORMAT_JSON',
      config: { name: durable, ack_policy: 'ACK_POLICY_EXPLICIT', ack_wait: { seconds: 30 } },
    }, metadata(), { deadline: Date.now() + 20000 });
    let done = false;
    s.on('data', (ev) => {
      if (ev.event === 'subscribed') {
        console.log(`subscribed consumer=${ev.subscribed.consumer} created=${ev.subscribed.created}`);
        return;
      }
      if (ev.event !== 'message') return;
      const m = ev.message;
      console.log(`received seq=${m.stream_sequence} subject=${m.subject} json=${JSON.stringify(protoValue(m.json))}`);
      got.push(m.ack_token);
      if (got.length === n && !done) {
        done = true;
        s.cancel(); // ends the stream: CANCELLED, below
        call(messages, 'Ack', { operations: got.map((token) => ({ token, kind: 'ACK_KIND_ACK' })), sync: true })
          .then((res) => {
            const failed = res.results.filter((r) => r.error);
            if (failed.length) throw new Error(`ack failed: ${JSON.stringify(failed)}`);
            console.log(`acked ${got.length}`);
          })
          .then(resolve, reject);
      }
    });
    s.on('error', (err) => {
      if (done && err.code === grpc.status.CANCELLED) return;
      reject(err);
    });
  });
}

// protoValue turns a google.protobuf.Value as proto-loader gives it
// (with oneofs: true) into plain JSON. The well-known types come from
// protobufjs's bundled definitions, whose field names are camelCase
// (numberValue, structValue) even with keepCase.
function protoValue(v) {
  if (!v) return null;
  switch (v.kind) {
    case 'nullValue': return null;
    case 'numberValue': return v.numberValue;
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'structValue': return Object.fromEntries(Object.entries(v.structValue.fields).map(([k, x]) => [k, protoValue(x)]));
    case 'listValue': return v.listValue.values.map(protoValue);
    default: return null;
  }
}

async function main() {
  const created = await call(admin, 'CreateStream', { config: { name: stream, subjects: [`${prefix}.>`] } });
  console.log(`created stream ${created.stream.config.name}`);

  for (let i = 1; i <= count; i++) {
    const res = await call(messages, 'Publish', {
      subject: `${prefix}.new`,
      json: { structValue: { fields: { n: { numberValue: i }, from: { stringValue: 'node' } } } },
      msg_id: `${prefix}-${i}`,
    });
    console.log(`published seq=${res.sequence} duplicate=${res.duplicate}`);
  }

  await subscribe(count);

  // No stream captures this subject: NOT_FOUND, reason NO_STREAM_FOR_SUBJECT.
  try {
    await call(messages, 'Publish', { subject: 'nowhere.example', text: 'lost' });
    throw new Error('publish to nowhere.example succeeded');
  } catch (err) {
    if (err.code === undefined) throw err;
    for (const line of describe(err)) console.log(line);
  }
  console.log('done');
}

main().then(() => {
  admin.close();
  messages.close();
}, (err) => {
  console.error(`error: ${err.message}`);
  if (err.code !== undefined) for (const line of describe(err)) console.error(line);
  process.exit(1);
});
