"""Chat channels: digests of the numbers posted to WeCom, DingTalk, Feishu, Slack, Teams or a
plain JSON webhook, on a schedule or on demand, each delivery claimed once in the database."""
