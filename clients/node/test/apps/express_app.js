'use strict';
// Express behind statehold.
const express = require('express');
const statehold = require('../../index.js');
const wizard = require('./wizard.js');

const { port, bodyMode } = wizard.args();
const app = express();
app.use(express.json());
app.use(statehold.middleware({ bodyMode }));
const conversationStates = statehold.conversationStates(); // was: {}

app.post('/telegram', (req, res) => {
  const message = req.body.message;
  const chatId = message.chat.id;
  const text = wizard.handle(conversationStates, chatId, message.text || '');
  res.json({ method: 'sendMessage', chat_id: chatId, text });
});

const server = app.listen(port, '127.0.0.1', () => {
  console.log(`listening on ${server.address().port}`);
});
