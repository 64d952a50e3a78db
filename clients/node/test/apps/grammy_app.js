'use strict';
// grammY at its defaults behind statehold: webhookCallback (10 s timeout,
// onTimeout "throw") in Express, a handler that works for a while (11 s
// for a name: longer than the timeout) and then answers through the Bot
// API. The statehold lines are marked.
const express = require('express');
const { Bot, webhookCallback } = require('grammy');
const statehold = require('../../index.js'); // (statehold)
const { fakeBotApi } = require('./fake_bot_api.js');
const wizard = require('./wizard.js');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const { port } = wizard.args();
  const api = await fakeBotApi();
  const bot = new Bot('123456:TEST-token', {
    client: { apiRoot: api.url },
    botInfo: { id: 123456, is_bot: true, first_name: 'Test', username: 'test_bot', can_join_groups: true, can_read_all_group_messages: false, supports_inline_queries: false },
  });
  bot.use(statehold.grammyMiddleware()); // (statehold)
  const conversationStates = statehold.conversationStates(); // (statehold) was: {}
  bot.on('message', async (ctx) => {
    const text = ctx.message.text || '';
    await sleep(text === 'Ann' ? 11000 : 300); // the LLM thinks
    await ctx.reply(wizard.handle(conversationStates, ctx.chat.id, text, { plan: true }));
  });

  const app = express();
  app.use(express.json());
  app.use(statehold.middleware()); // (statehold)
  app.post('/telegram', webhookCallback(bot, 'express'));
  app.get('/_sent', (_req, res) => res.json(api.sent));
  const server = app.listen(port, '127.0.0.1', () => {
    console.log(`listening on ${server.address().port}`);
  });
})();
