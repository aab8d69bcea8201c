"""The text a reader sees in a saved web page or an e-mail file, for folders of documents.

Help-desk exports, saved pages and mail clients' "save as" give `.html` and `.eml` files; read as plain text, a
page is mostly tags, scripts and styles, and an e-mail is headers, MIME boundaries and base64. Python's own
`html.parser` and `email` do the parsing; what is written here is only which parts count as text (the page's
title and visible body, or only the body's <main> part when it has one; the message's subject and its plain-text
body, else its HTML body). Hand-written on top of the standard library rather than through BeautifulSoup/html2text
or trafilatura: they would be new dependencies for ~60 lines.
"""
from __future__ import annotations

import email
import email.policy
import re
from html.parser import HTMLParser

HTML_SUFFIXES = (".html", ".htm", ".xhtml")
EMAIL_SUFFIXES = (".eml",)
_HIDDEN = {"script", "style", "noscript", "template", "svg", "head"}  # <title> is read although inside <head>
_BLOCKS = {"p", "div", "br", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
           "header", "footer", "blockquote", "pre", "table", "ul", "ol", "dt", "dd", "hr"}


class _VisibleText(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self.parts: list[str] = []  # the body's visible text
        self.main: list[str] = []  # the part of it inside <main>
        self.hidden = 0  # depth inside elements whose text is not shown
        self.in_title = False
        self.in_main = 0

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self.in_title = True
        elif tag == "body":  # a <head> left open (browsers close it here) must not hide the page
            self.hidden = 0
        elif tag in _HIDDEN:
            self.hidden += 1
        elif tag == "main":
            self.in_main += 1
        if tag in _BLOCKS:
            self._add("\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        elif tag in _HIDDEN and self.hidden:
            self.hidden -= 1
        elif tag == "main" and self.in_main:
            self.in_main -= 1
        if tag in _BLOCKS:
            self._add("\n")

    def handle_data(self, data):
        if self.in_title:
            self.title.append(data)
        elif not self.hidden:
            self._add(data)

    def _add(self, text: str) -> None:
        self.parts.append(text)
        if self.in_main:
            self.main.append(text)


def html_text(page: str) -> str:
    """The page's title and visible text, one line per block, spaces collapsed. When the page marks its content
    with <main> (HTML5; documentation generators, blogs and help desks do), only that: the navigation, menus and
    footers around it are the same on every page, and a classifier reading a document's first `data.max_length`
    tokens would read them instead (an mdBook page opens with its keyboard help and theme menu)."""
    parser = _VisibleText()
    parser.feed(page)
    parser.close()
    body = parser.main if "".join(parser.main).strip() else parser.parts
    lines = (re.sub(r"\s+", " ", line).strip() for line in "".join(parser.title + ["\n"] + body).split("\n"))
    return "\n".join(line for line in lines if line)


def email_text(raw: bytes) -> str:
    """An RFC 822 message's subject and body: its text/plain part, else its text/html part as text (each in the
    charset the message declares)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain", "html"))
    text = ""
    if body is not None:
        try:
            text = body.get_content()
        except (LookupError, UnicodeError):  # an unknown or wrong charset: the bytes as UTF-8, mended
            text = (body.get_payload(decode=True) or b"").decode("utf-8", "replace")
        if body.get_content_type() == "text/html":
            text = html_text(text)
    subject = str(message.get("subject") or "").strip()
    return "\n\n".join(part for part in (subject, text.strip()) if part)
