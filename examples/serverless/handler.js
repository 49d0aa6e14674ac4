// A serverless handler: woken up (by a schedule or a trigger), it Fetches
// batches from a durable consumer over REST, processes each message, acks
// the batch (sync: confirmed by JetStream before the function returns, so
// a frozen or killed instance cannot lose the ack), and returns once it
// handled JETWAY_MAX messages or the consumer had nothing more. It keeps no
// state: the durable consumer remembers where the last run stopped, and
// ack tokens are signed, so any bridge replica (with the same
// --ack-keys-file) takes them.
//
// handler() is the entry point a platform calls (AWS Lambda style:
// exports.handler); `node handler.js` runs one invocation.
//
// Environment:
//   JETWAY_HTTP_URL   the bridge's REST root (default http://127.0.0.1:8080)
//   JETWAY_ACCESS_TOKEN  an access token (jwy_…), sent as
//                     "Authorization: Bearer <token>": give the function one
//                     narrowed to OPERATION_CONSUME and OPERATION_ACK on its
//                     stream rather than a key that may do more
//   JETWAY_API_KEY    else an API key, sent as "Authorization: ApiKey <key>"
//   JETWAY_STREAM     the stream (default EXAMPLE_JOBS)
//   JETWAY_CONSUMER   the durable consumer (default jobs)
//   JETWAY_MAX        most messages per invocation (default 5)
'use strict';

const { client, accessTokenOrKey } = require('./jetway');

async function handler() {
  const stream = process.env.JETWAY_STREAM || 'EXAMPLE_JOBS';
  const consumer = process.env.JETWAY_CONSUMER || 'jobs';
  const max = Number(process.env.JETWAY_MAX || 5);
  const post = client(accessTokenOrKey());
  const processed = [];
  while (processed.length < max) {
    // Returns as soon as messages are there, or empty after wait.
    const { messages = [] } = await post(`/v1/streams/${stream}/consumers/${consumer}:fetch`, {
      batch: Math.min(max - processed.length, 100), wait: '1s', format: 'PAYLOAD_FORMAT_JSON',
    });
    if (messages.length === 0) break;
    for (const m of messages) {
      process1(m);
      processed.push(Number(m.stream_sequence));
    }
    const { results = [] } = await post('/v1/acks', {
      operations: messages.map((m) => ({ token: m.ack_token, kind: 'ACK_KIND_ACK' })), sync: true,
    });
    const failed = results.filter((r) => r.error);
    if (failed.length) throw new Error(`ack refused: ${JSON.stringify(failed.map((r) => r.error))}`);
  }
  return { processed };
}

// process1 is the work: here it prints the job.
function process1(m) {
  console.log(`processed seq=${m.stream_sequence} job=${JSON.stringify(m.json)} delivered=${m.num_delivered}`);
}

exports.handler = handler;

if (require.main === module) {
  handler().then(({ processed }) => {
    console.log(processed.length
      ? `run: processed ${processed.length} (seq ${processed[0]}..${processed[processed.length - 1]})`
      : 'run: processed 0 (nothing to do)');
  }, (err) => {
    console.error(`run: ${err.message}`);
    process.exit(1);
  });
}
