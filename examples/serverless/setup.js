// Creates the stream and the durable consumer the handler reads, and
// publishes JETWAY_JOBS jobs (default 8) to it. Safe to run again: the
// stream and consumer are kept, jobs are deduplicated by msg_id (run it
// with a new JETWAY_STREAM for a fresh start).
'use strict';

const { client, apiKey } = require('./jetway');

// Setup creates and publishes: it needs the API key (an access token of
// the handler's may only consume and ack).
const post = client(apiKey());

const stream = process.env.JETWAY_STREAM || 'EXAMPLE_JOBS';
const consumer = process.env.JETWAY_CONSUMER || 'jobs';
const jobs = Number(process.env.JETWAY_JOBS || 8);
const prefix = stream.toLowerCase();

async function main() {
  await post('/v1/streams', { name: stream, subjects: [`${prefix}.>`] });
  await post(`/v1/streams/${stream}/consumers`, { name: consumer, ack_policy: 'ACK_POLICY_EXPLICIT', ack_wait: '30s' });
  console.log(`setup: stream ${stream}, durable consumer ${consumer}`);
  for (let i = 1; i <= jobs; i++) {
    const r = await post(`/v1/subjects/${prefix}.job:publish`, { json: { job: i }, msg_id: `${prefix}-job-${i}` });
    console.log(`setup: published job ${i} seq=${r.sequence} duplicate=${r.duplicate}`);
  }
}

main().catch((err) => {
  console.error(`setup: ${err.message}`);
  process.exit(1);
});
