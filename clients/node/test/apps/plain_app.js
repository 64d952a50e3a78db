'use strict';
// A node:http bot behind statehold, with the plain (req, res) wrapper.
const http = require('node:http');
const statehold = require('../../index.js');
const wizard = require('./wizard.js');

const { port } = wizard.args();
const conversationStates = statehold.conversationStates(); // was: {}

const server = http.createServer(statehold.wrap((req, res) => {
  let raw = '';
  req.on('data', (c) => { raw += c; });
  req.on('end', () => {
    const message = JSON.parse(raw).message;
    const text = wizard.handle(conversationStates, message.chat.id, message.text || '');
    const body = JSON.stringify({ method: 'sendMessage', chat_id: message.chat.id, text });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}));
server.listen(port, '127.0.0.1', () => console.log(`listening on ${server.address().port}`));
