"""File channel: orders that arrive as CSV/Excel spreadsheets (WeChat, phone, trade shows)."""
