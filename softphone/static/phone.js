// lsnode softphone: a small SIP user agent over WebSocket (RFC 7118) for
// WebRTC calls. It registers as an Outbound UA (RFC 5626: instance, reg-id)
// with SHA-256 digest, makes and answers audio calls, answers OPTIONS (the
// node's flow keepalive) and hangs up. Every request goes over its one
// WebSocket, whatever a route says: the node that holds the socket is the
// UA's edge proxy. No dependencies; an ES module.

const CRLF = '\r\n';
const COMPACT = { v: 'via', f: 'from', t: 'to', i: 'call-id', m: 'contact', l: 'content-length', c: 'content-type', k: 'supported' };

function rand(n = 10) {
  const a = new Uint8Array(n);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => 'abcdefghijklmnopqrstuvwxyz0123456789'[b % 36]).join('');
}

// splitList splits a header value at commas outside <> and quotes.
function splitList(v) {
  const out = [];
  let cur = '', angle = 0, quote = false;
  for (const ch of v) {
    if (ch === '"') quote = !quote;
    else if (!quote && ch === '<') angle++;
    else if (!quote && ch === '>') angle--;
    if (ch === ',' && !quote && angle === 0) { out.push(cur.trim()); cur = ''; continue; }
    cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

// parse reads one SIP message; null when it is not one.
export function parse(text) {
  const end = text.indexOf(CRLF + CRLF);
  if (end < 0) return null;
  const lines = text.slice(0, end).split(CRLF);
  const first = lines.shift();
  const headers = [];
  for (const l of lines) {
    if ((l[0] === ' ' || l[0] === '\t') && headers.length) { headers[headers.length - 1][1] += ' ' + l.trim(); continue; }
    const c = l.indexOf(':');
    if (c <= 0) return null;
    let name = l.slice(0, c).trim().toLowerCase();
    name = COMPACT[name] || name;
    headers.push([name, l.slice(c + 1).trim()]);
  }
  const msg = { headers, body: text.slice(end + 4) };
  msg.get = (n) => { const h = headers.find(([k]) => k === n.toLowerCase()); return h ? h[1] : ''; };
  msg.all = (n) => headers.filter(([k]) => k === n.toLowerCase()).flatMap(([, v]) => splitList(v));
  const f = first.split(' ');
  if (f[0] === 'SIP/2.0') { msg.status = parseInt(f[1], 10); msg.reason = f.slice(2).join(' '); }
  else if (f.length === 3 && f[2] === 'SIP/2.0') { msg.method = f[0]; msg.uri = f[1]; }
  else return null;
  return msg;
}

function build(start, headers, body = '') {
  const len = new TextEncoder().encode(body).length;
  return start + CRLF + headers.map(([k, v]) => k + ': ' + v).join(CRLF) + CRLF + 'Content-Length: ' + len + CRLF + CRLF + body;
}

// param reads a header parameter (;tag=...).
function param(v, name) {
  const m = new RegExp(';\\s*' + name + '=([^;>,\\s]+)', 'i').exec(v);
  return m ? m[1].replace(/^"|"$/g, '') : '';
}

// uriOf is the URI of a name-addr or addr-spec.
function uriOf(v) {
  const m = /<([^>]*)>/.exec(v);
  return m ? m[1] : v.split(';')[0].trim();
}

async function sha256(s) {
  const d = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(s));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, '0')).join('');
}

// digestFields reads a Digest challenge's parameters.
function digestFields(ch) {
  const out = {};
  const re = /(\w+)=("([^"]*)"|[^,\s]+)/g;
  let m;
  while ((m = re.exec(ch.replace(/^Digest\s+/i, '')))) out[m[1].toLowerCase()] = m[3] !== undefined ? m[3] : m[2];
  return out;
}

// authorize answers one of challenges (SHA-256, qop=auth; RFC 7616, RFC
// 8760) for method and uri, of realm when given; null when none is.
export async function authorize(challenges, user, password, method, uri, realm = '') {
  const ch = challenges.map(digestFields).find((c) => (c.algorithm || 'MD5').toUpperCase() === 'SHA-256' && (!realm || c.realm === realm));
  if (!ch) return null;
  const cnonce = rand(16), nc = '00000001';
  const ha1 = await sha256(`${user}:${ch.realm}:${password}`);
  const ha2 = await sha256(`${method}:${uri}`);
  const qop = (ch.qop || '').split(',').map((q) => q.trim()).includes('auth') ? 'auth' : '';
  const response = qop ? await sha256(`${ha1}:${ch.nonce}:${nc}:${cnonce}:${qop}:${ha2}`) : await sha256(`${ha1}:${ch.nonce}:${ha2}`);
  let v = `Digest username="${user}", realm="${ch.realm}", nonce="${ch.nonce}", uri="${uri}", algorithm=SHA-256, response="${response}"`;
  if (qop) v += `, qop=${qop}, nc=${nc}, cnonce="${cnonce}"`;
  if (ch.opaque) v += `, opaque="${ch.opaque}"`;
  return v;
}

// Phone is one user's UA on one WebSocket.
export class Phone extends EventTarget {
  constructor({ ws, user, domain, password, iceServers = [], iceTransportPolicy = 'all' }) {
    super();
    Object.assign(this, { wsURL: ws, user, domain, password, iceServers, iceTransportPolicy });
    this.aor = `sip:${user}@${domain}`;
    this.host = rand(12) + '.invalid';
    this.transport = ws.startsWith('wss:') ? 'WSS' : 'WS';
    this.contact = `<sip:${user}@${this.host};transport=${this.transport.toLowerCase()};ob>`;
    this.instance = crypto.randomUUID();
    this.pending = new Map(); // Via branch → {resolve, reject, timer}
    this.calls = new Map(); // Call-ID → Call
    this.regCallID = rand(16);
    this.cseq = 1;
  }

  emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  connect() {
    return new Promise((resolve, reject) => {
      const s = new WebSocket(this.wsURL, 'sip');
      s.onopen = () => { this.socket = s; resolve(); };
      s.onerror = () => reject(new Error('WebSocket to ' + this.wsURL + ' failed'));
      s.onclose = () => { this.emit('closed'); for (const p of this.pending.values()) p.reject(new Error('WebSocket closed')); this.pending.clear(); };
      s.onmessage = (e) => this.receive(typeof e.data === 'string' ? e.data : new TextDecoder().decode(e.data));
    });
  }

  close() { if (this.socket) this.socket.close(); }

  send(text) { this.socket.send(text); }

  via(branch) { return `SIP/2.0/${this.transport} ${this.host};branch=${branch}`; }

  // request sends a request and resolves with its final response
  // (provisional ones go to onProvisional).
  request(method, uri, headers, body = '', onProvisional = null) {
    const branch = 'z9hG4bK' + rand(16);
    const text = build(`${method} ${uri} SIP/2.0`, [['Via', this.via(branch)], ['Max-Forwards', '70'], ...headers], body);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(branch); reject(new Error(method + ' timed out')); }, 32000);
      this.pending.set(branch, { resolve, reject, timer, onProvisional, method, uri, headers });
      this.send(text);
    });
  }

  // withAuth sends a request, and again with credentials on a 401 or 407.
  async withAuth(method, uri, headersFor, body = '', onProvisional = null) {
    let res = await this.request(method, uri, headersFor(null), body, onProvisional);
    if (res.status === 401 || res.status === 407) {
      if (method === 'INVITE') this.ackFailure(uri, headersFor(null), res);
      const name = res.status === 401 ? 'www-authenticate' : 'proxy-authenticate';
      const challenges = res.headers.filter(([k]) => k === name).map(([, v]) => v);
      // The password answers only our own domain's realm, learned from
      // the first REGISTER: a domain we call may not collect a digest of it.
      if (method === 'REGISTER' && !this.realm) {
        const c = challenges.map(digestFields).find((x) => (x.algorithm || '').toUpperCase() === 'SHA-256');
        if (c) this.realm = c.realm;
      }
      const auth = await authorize(challenges, this.user, this.password, method, uri, this.realm || this.domain);
      if (!auth) throw new Error(`${method}: no SHA-256 digest challenge of realm ${this.realm || this.domain}`);
      res = await this.request(method, uri, headersFor([res.status === 401 ? 'Authorization' : 'Proxy-Authorization', auth]), body, onProvisional);
    }
    if (method === 'INVITE' && res.status >= 300) this.ackFailure(uri, headersFor(null), res);
    return res;
  }

  // ackFailure ACKs a non-2xx final answer to an INVITE (RFC 3261 §17.1.1.3).
  ackFailure(uri, headers, res) {
    const keep = headers.filter(([k]) => ['from', 'call-id', 'route'].includes(k.toLowerCase()));
    const cseq = parseInt(res.get('cseq'), 10);
    this.send(build(`ACK ${uri} SIP/2.0`, [['Via', res.get('via')], ['Max-Forwards', '70'], ...keep, ['To', res.get('to')], ['CSeq', cseq + ' ACK']]));
  }

  async register(expires = 600) {
    const headersFor = (auth) => {
      const h = [['From', `<${this.aor}>;tag=${this.regTag || (this.regTag = rand())}`], ['To', `<${this.aor}>`],
        ['Call-ID', this.regCallID], ['CSeq', `${this.cseq++} REGISTER`],
        ['Contact', `${this.contact.replace(';ob>', '>')};+sip.instance="<urn:uuid:${this.instance}>";reg-id=1`],
        ['Expires', String(expires)], ['Supported', 'path, outbound, gruu'], ['User-Agent', 'lsnode-softphone']];
      if (auth) h.push(auth);
      return h;
    };
    const res = await this.withAuth('REGISTER', `sip:${this.domain}`, headersFor);
    if (res.status !== 200) throw new Error(`REGISTER: ${res.status} ${res.reason}`);
    this.emit('registered', { expires });
    return res;
  }

  receive(text) {
    const msg = parse(text);
    if (!msg) return;
    if (msg.status) {
      const p = this.pending.get(param(msg.all('via')[0] || '', 'branch'));
      if (!p) {
        // A 2xx to an INVITE again: its ACK was lost (RFC 3261 §13.2.2.4).
        const c = this.calls.get(msg.get('call-id'));
        if (msg.status >= 200 && msg.status < 300 && c && c.ack && /INVITE/.test(msg.get('cseq'))) this.send(c.ack);
        return;
      }
      if (msg.status < 200) { if (p.onProvisional) p.onProvisional(msg); return; }
      clearTimeout(p.timer);
      this.pending.delete(param(msg.all('via')[0], 'branch'));
      p.resolve(msg);
      return;
    }
    const call = this.calls.get(msg.get('call-id'));
    switch (msg.method) {
      case 'OPTIONS': this.respond(msg, 200, 'OK'); break;
      case 'INVITE':
        if (call) { this.respond(msg, 491, 'Request Pending'); break; }
        this.incoming(msg);
        break;
      case 'ACK': if (call) call.acked(); break;
      case 'BYE':
        this.respond(msg, call ? 200 : 481, call ? 'OK' : 'Call/Transaction Does Not Exist');
        if (call) call.ended('remote hung up');
        break;
      case 'CANCEL':
        this.respond(msg, call ? 200 : 481, call ? 'OK' : 'Call/Transaction Does Not Exist', [], '', call ? call.localTag : '');
        if (call && !call.answered) { this.respond(call.invite, 487, 'Request Terminated', [], '', call.localTag); call.ended('cancelled'); }
        break;
      default: this.respond(msg, 405, 'Method Not Allowed');
    }
  }

  // respond answers req (UAS): its Vias, From, To (with our tag), Call-ID
  // and CSeq, plus headers.
  respond(req, status, reason, headers = [], body = '', tag = '') {
    let to = req.get('to');
    if (status > 100 && !param(to, 'tag')) to += ';tag=' + (tag || rand());
    const h = [...req.all('via').map((v) => ['Via', v]), ['From', req.get('from')], ['To', to],
      ['Call-ID', req.get('call-id')], ['CSeq', req.get('cseq')], ...headers];
    this.send(build(`SIP/2.0 ${status} ${reason}`, h, body));
  }

  async newPeer() {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy });
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    for (const t of stream.getTracks()) pc.addTrack(t, stream);
    return { pc, stream };
  }

  // call calls an AOR; resolves with the Call once answered.
  async call(target) {
    const call = new Call(this, rand(16), rand(), true);
    call.remoteURI = target;
    this.calls.set(call.callID, call);
    try {
      Object.assign(call, await this.newPeer());
      await call.pc.setLocalDescription(await call.pc.createOffer());
      await iceGathered(call.pc);
      const headersFor = (auth) => {
        const h = [['From', `<${this.aor}>;tag=${call.localTag}`], ['To', `<${target}>`], ['Call-ID', call.callID],
          ['CSeq', `${call.localSeq = this.cseq++} INVITE`], ['Contact', this.contact], ['Content-Type', 'application/sdp'],
          ['Supported', 'outbound'], ['User-Agent', 'lsnode-softphone']];
        if (auth) h.push(auth);
        return h;
      };
      const t0 = performance.now();
      const res = await this.withAuth('INVITE', target, headersFor, call.pc.localDescription.sdp, (r) => this.emit('progress', { status: r.status }));
      call.setupMs = performance.now() - t0;
      if (res.status !== 200) throw new Error(`INVITE: ${res.status} ${res.reason}`);
      call.remoteTag = param(res.get('to'), 'tag');
      call.toHeader = res.get('to');
      call.remoteTarget = uriOf(res.get('contact'));
      call.routes = res.all('record-route').reverse();
      call.fromHeader = `<${this.aor}>;tag=${call.localTag}`;
      await call.pc.setRemoteDescription({ type: 'answer', sdp: res.body });
      call.answered = true;
      call.sendInDialog('ACK', call.localSeq);
      return call;
    } catch (e) {
      call.ended(e.message);
      throw e;
    }
  }

  incoming(inv) {
    const call = new Call(this, inv.get('call-id'), rand(), false);
    call.invite = inv;
    call.remoteURI = uriOf(inv.get('from'));
    call.remoteTag = param(inv.get('from'), 'tag');
    call.remoteTarget = uriOf(inv.get('contact'));
    call.routes = inv.all('record-route');
    call.fromHeader = inv.get('to') + ';tag=' + call.localTag;
    call.toHeader = inv.get('from');
    call.localSeq = 1;
    this.calls.set(call.callID, call);
    this.respond(inv, 180, 'Ringing', [['Contact', this.contact]], '', call.localTag);
    this.emit('incoming', { call });
  }
}

function iceGathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === 'complete') resolve(); };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, 5000); // whatever was gathered by then
  });
}

// Call is one dialog and its peer connection.
export class Call extends EventTarget {
  constructor(phone, callID, localTag, outgoing) {
    super();
    Object.assign(this, { phone, callID, localTag, outgoing, answered: false, over: false });
  }

  async answer() {
    Object.assign(this, await this.phone.newPeer());
    await this.pc.setRemoteDescription({ type: 'offer', sdp: this.invite.body });
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    await iceGathered(this.pc);
    this.answered = true;
    this.phone.respond(this.invite, 200, 'OK', [...this.routes.map((r) => ['Record-Route', r]), ['Contact', this.phone.contact],
      ['Content-Type', 'application/sdp']], this.pc.localDescription.sdp, this.localTag);
  }

  decline() { this.phone.respond(this.invite, 486, 'Busy Here', [], '', this.localTag); this.ended('declined'); }

  acked() { this.dispatchEvent(new CustomEvent('confirmed')); }

  // sendInDialog sends ACK (no answer) or another request of the dialog.
  sendInDialog(method, seq) {
    const h = [...this.routes.map((r) => ['Route', r]), ['From', this.fromHeader], ['To', this.toHeader], ['Call-ID', this.callID],
      ['CSeq', `${seq} ${method}`]];
    if (method === 'ACK') {
      this.ack = build(`ACK ${this.remoteTarget} SIP/2.0`, [['Via', this.phone.via('z9hG4bK' + rand(16))], ['Max-Forwards', '70'], ...h]);
      this.phone.send(this.ack);
      return Promise.resolve(null);
    }
    return this.phone.request(method, this.remoteTarget, h);
  }

  async hangup() {
    if (this.over) return;
    const res = await this.sendInDialog('BYE', ++this.localSeq);
    this.ended('hung up');
    return res;
  }

  ended(why) {
    if (this.over) return;
    this.over = true;
    if (this.pc) this.pc.close();
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.phone.calls.delete(this.callID);
    this.dispatchEvent(new CustomEvent('ended', { detail: { why } }));
  }

  // rtpBytes sums the RTP bytes received and sent so far (getStats).
  async rtpBytes() {
    let inbound = 0, outbound = 0, relayed = false;
    if (!this.pc) return { inbound, outbound, relayed };
    const stats = await this.pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp') inbound += s.bytesReceived || 0;
      if (s.type === 'outbound-rtp') outbound += s.bytesSent || 0;
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        const local = stats.get(s.localCandidateId);
        if (local && local.candidateType === 'relay') relayed = true;
      }
    });
    return { inbound, outbound, relayed };
  }
}

// turnServers fetches TURN credentials from the node (its
// /softphone/turn, digest with the SIP password; the challenge comes as
// X-SIP-Authenticate so a browser shows no login box) as RTCIceServer
// entries; [] when the node has no relay.
export async function turnServers(base, user, password, realm = '') {
  const path = '/softphone/turn';
  let res = await fetch(base + path, { credentials: 'omit' });
  if (res.status === 401) {
    const challenges = res.headers.get('X-SIP-Authenticate');
    const auth = challenges && await authorize(challenges.split(/,\s*(?=Digest )/), user, password, 'GET', path, realm);
    if (!auth) throw new Error('TURN credentials: no SHA-256 digest challenge');
    res = await fetch(base + path, { credentials: 'omit', headers: { Authorization: auth } });
  }
  if (res.status === 404) return [];
  if (!res.ok) throw new Error(`TURN credentials: ${res.status}`);
  const c = await res.json();
  return [{ urls: c.uris, username: c.username, credential: c.password }];
}
