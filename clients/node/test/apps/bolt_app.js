'use strict';
// Slack Bolt at its defaults behind statehold: the ExpressReceiver
// acknowledges each event before the listeners run (no
// processBeforeResponse), and the listener works for a while and then
// answers through the Web API. The statehold lines are marked.
const express = require('express');
const { App, ExpressReceiver, LogLevel } = require('@slack/bolt');
const statehold = require('../../index.js'); // (statehold)
const { fakeBotApi } = require('./fake_bot_api.js');
const wizard = require('./wizard.js');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const { port } = wizard.args();
  const api = await fakeBotApi();
  const expressApp = express();
  expressApp.use(statehold.middleware()); // (statehold)
  expressApp.get('/_sent', (_req, res) => res.json(api.sent));
  const receiver = new ExpressReceiver({ signingSecret: process.env.SLACK_SIGNING_SECRET, app: expressApp, logLevel: LogLevel.ERROR });
  const app = new App({
    token: 'xoxb-test', receiver, tokenVerificationEnabled: false, logLevel: LogLevel.ERROR,
    clientOptions: { slackApiUrl: `${api.url}/api/` },
  });
  statehold.bolt(app); // (statehold)
  const conversationStates = statehold.conversationStates(); // (statehold) was: {}
  app.message(async ({ message, say }) => {
    await sleep(300); // the LLM thinks
    await say(wizard.handle(conversationStates, message.user, message.text || '', { plan: true }));
  });
  const server = expressApp.listen(port, '127.0.0.1', () => {
    console.log(`listening on ${server.address().port}`);
  });
})();
