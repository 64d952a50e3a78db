'use strict';
// A web chat widget's backend on Express: the widget sends
// `x-session-id` and `{ "text": ... }`, the backend walks a pizza order and
// keeps each session's order in memory.
//
//   node server.js            (PORT=3000 by default)
const express = require('express');

const app = express();
app.use(express.json());
const conversationStates = {};

const SIZES = ['small', 'medium', 'large'];

function step(order, text) {
  switch (order.stage) {
    case 'size':
      if (!SIZES.includes(text)) return 'Small, medium or large?';
      order.size = text;
      order.stage = 'toppings';
      return 'Toppings? (comma separated, or none)';
    case 'toppings':
      order.toppings = text === 'none' ? [] : text.split(',').map((t) => t.trim()).filter(Boolean);
      order.stage = 'address';
      return 'Delivery address?';
    case 'address':
      order.address = text;
      order.stage = 'confirm';
      return `A ${order.size} pizza with ${order.toppings.join(', ') || 'nothing'} to ${text}. Confirm? (yes/no)`;
    default:
      return null;
  }
}

app.post('/chat', (req, res) => {
  const sessionId = req.get('x-session-id');
  const text = String((req.body && req.body.text) || '').trim();
  if (!sessionId) return res.status(400).json({ error: 'x-session-id missing' });
  if (text === 'hi' || !(sessionId in conversationStates)) {
    conversationStates[sessionId] = { stage: 'size' };
    return res.json({ reply: 'Hi! Which size: small, medium or large?' });
  }
  const order = conversationStates[sessionId];
  if (order.stage === 'confirm') {
    delete conversationStates[sessionId];
    return res.json({ reply: text === 'yes' ? `Ordered! It goes to ${order.address}.` : 'Cancelled.' });
  }
  return res.json({ reply: step(order, text) });
});

if (require.main === module) {
  const server = app.listen(Number(process.env.PORT || 3000), '127.0.0.1', () => {
    console.log(`listening on ${server.address().port}`);
  });
}
module.exports = app;
