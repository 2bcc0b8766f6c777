// The softphone page: log in as a user of the node's domain, call an
// AOR, answer, hang up, and see the call's path (this node, the relays
// the media went through).
import { Phone, turnServers } from './phone.js';

const $ = (id) => document.getElementById(id);
const status = (s) => { $('status').textContent = s; };
const wsURL = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/';
let phone = null, current = null, statsTimer = null;

const domain = new URLSearchParams(location.search).get('domain') || location.hostname;
$('login').querySelector('[name=domain]').value = domain;
status(`Log in as a user of ${domain} (SIP over ${location.protocol === 'https:' ? 'wss' : 'ws'} to ${location.host}).`);

$('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  try {
    const iceServers = await turnServers(location.origin, f.get('user'), f.get('password'), f.get('domain'));
    phone = new Phone({ ws: wsURL, user: f.get('user'), domain: f.get('domain'), password: f.get('password'), iceServers,
      iceTransportPolicy: f.get('relay') ? 'relay' : 'all' });
    await phone.connect();
    await phone.register(600);
    phone.addEventListener('incoming', (ev) => ringing(ev.detail.call));
    phone.addEventListener('closed', () => status('Disconnected.'));
    setInterval(() => phone.register(600).catch((err) => status(err.message)), 280000);
    status(`Registered as ${phone.aor} at ${location.host}.`);
    $('login').hidden = true;
    $('dial').hidden = false;
  } catch (err) {
    status(err.message);
  }
});

$('dial').addEventListener('submit', async (e) => {
  e.preventDefault();
  const target = new FormData(e.target).get('target');
  status(`Calling ${target}…`);
  try {
    inCall(await phone.call(target));
  } catch (err) {
    status(err.message);
  }
});

function ringing(call) {
  $('caller').textContent = call.remoteURI;
  $('ringing').hidden = false;
  $('answer').onclick = async () => { $('ringing').hidden = true; await call.answer(); inCall(call); };
  $('decline').onclick = () => { $('ringing').hidden = true; call.decline(); };
  call.addEventListener('ended', () => { $('ringing').hidden = true; });
}

function inCall(call) {
  current = call;
  status(`In a call with ${call.remoteURI}.`);
  $('hangup').hidden = false;
  $('hangup').onclick = () => call.hangup();
  call.addEventListener('ended', (ev) => {
    status(`Call ended: ${ev.detail.why}.`);
    $('hangup').hidden = true;
    clearInterval(statsTimer);
    current = null;
  });
  // The remote tracks exist once the remote description is set, which
  // happened before this (the answer, or the offer we answered).
  const audio = new Audio();
  audio.srcObject = new MediaStream(call.pc.getReceivers().map((r) => r.track));
  audio.play().catch(() => {});
  statsTimer = setInterval(() => showPath(call), 1000);
}

async function showPath(call) {
  if (!call.pc) return;
  const stats = await call.pc.getStats();
  let pair = null;
  stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
  const b = await call.rtpBytes();
  const cand = (id) => { const c = id && stats.get(id); return c ? `${c.candidateType} ${c.address}:${c.port}` : '?'; };
  $('path').textContent = [`signalling: this browser → ${location.host} (the node holding this WebSocket) → the overlay → ${call.remoteURI}`,
    `media: ${pair ? cand(pair.localCandidateId) + ' → ' + cand(pair.remoteCandidateId) : 'connecting'}`,
    `RTP bytes in ${b.inbound}, out ${b.outbound}`].join('\n');
}
