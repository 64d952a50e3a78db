'use strict';
// A stand-in for the Telegram Bot API and Slack's Web API on loopback (no
// network here), for the bots that answer first: it records what they send.

/** A stand-in for the Telegram Bot API on loopback (no network here):
 * records sendMessage; resolves to its base URL and the record. */
function fakeBotApi() {
  const http = require('node:http');
  const sent = [];
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => { raw += c; });
    req.on('end', () => {
      const method = req.url.split('?')[0].split('/').pop();
      let params = {};
      try {
        params = JSON.parse(raw || '{}');
      } catch (e) {
        params = Object.fromEntries(new URLSearchParams(raw)); // Slack's form posts
      }
      res.setHeader('content-type', 'application/json');
      if (method === 'sendMessage') { // Telegram
        sent.push({ chat_id: Number(params.chat_id), text: params.text });
        const result = { message_id: sent.length, date: Math.floor(Date.now() / 1000), chat: { id: Number(params.chat_id), type: 'private' }, text: params.text };
        return res.end(JSON.stringify({ ok: true, result }));
      }
      if (method === 'chat.postMessage') { // Slack
        sent.push({ chat_id: params.channel, text: params.text });
        return res.end(JSON.stringify({ ok: true, channel: params.channel, ts: `${Date.now() / 1000}`, message: { text: params.text } }));
      }
      // auth.test and anything else a framework asks at startup.
      return res.end(JSON.stringify({ ok: true, result: true, user_id: 'UBOT', bot_id: 'BBOT', team_id: 'T1', url: 'https://t.slack.com/', team: 't', user: 'bot' }));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${server.address().port}`, sent })));
}

module.exports = { fakeBotApi };
