"""Write bench/corpus/: six newsletters as email tools produce them, for the peer comparison (figure 7).

What makes email HTML hard to rewrite without damage is all here: table layouts with inline styles,
Outlook's MSO conditional comments (ghost tables, VML buttons whose ``href`` only Outlook sees, the
``<!--[if !mso]><!-->`` idiom), entities (``&amp;`` in long tracking query strings, ``&nbsp;``,
``&copy;``), single-quoted and upper-case attributes, CRLF line ends, non-ASCII text, ``mailto:``,
``tel:`` and ``#anchor`` links that must not be tracked, an image map. No personalization placeholders:
the peer does not personalise, so both tools get exactly the same work.

Deterministic: ``python -m bench.make_corpus`` writes the same files every time. The files are committed;
the bench only reads them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"

ADJECTIVES = (
    "Alpine",
    "Coastal",
    "Harbour",
    "Nordic",
    "Urban",
    "Midnight",
    "Golden",
    "Evergreen",
    "Granite",
    "Velvet",
    "Copper",
    "Saffron",
    "Arctic",
    "Meadow",
    "Summit",
    "Cedar",
    "Indigo",
    "Ember",
)
NOUNS = (
    "parka",
    "runner",
    "backpack",
    "lantern",
    "kettle",
    "blanket",
    "journal",
    "headphones",
    "thermos",
    "scarf",
    "tent",
    "bike light",
    "rain jacket",
    "trail shoe",
    "desk lamp",
    "wool socks",
    "camera strap",
    "notebook",
)
SENTENCES = (
    "Built to last through every season, with materials we test on our own expeditions.",
    "Our customers' favourite, now back in stock in three new colours.",
    "Lightweight, packable and ready for whatever the weekend brings.",
    "Made in small batches by a family workshop we have worked with since 2009.",
    "Free repairs for life — because the greenest product is the one you already own.",
    "Rated 4.8 out of 5 by more than 2,000 reviewers this year.",
    "Pairs perfectly with the rest of the collection; see the full range online.",
)


@dataclass(frozen=True)
class Style:
    name: str
    title: str
    lang: str
    brand: str
    domain: str
    accent: str
    cards: int  # product or article cards: the newsletter's length
    crlf: bool = False
    single_quotes: bool = False
    upper_case: bool = False
    image_map: bool = False
    greeting: str = "Hello,"
    extra_text: str = ""


STYLES = (
    Style(
        "harbour-outfitters-weekly",
        "Harbour Outfitters — this week's picks",
        "en",
        "Harbour Outfitters",
        "harbour-outfitters.example",
        "#0b6e99",
        cards=14,
    ),
    Style(
        "nordlicht-winterschlussverkauf",
        "Nordlicht: Winterschlussverkauf \N{EN DASH} bis zu 50 % Rabatt",
        "de",
        "Nordlicht Möbel",
        "nordlicht-moebel.example",
        "#b3261e",
        cards=22,
        crlf=True,
        greeting="Hallo und herzlich willkommen zum Schlussverkauf!",
        extra_text="Größen, Farben und Preise gelten solange der Vorrat reicht. Über 200 Artikel reduziert.",
    ),
    Style(
        "summit-lisboa-invitation",
        "Open Source Summit Lisboa — your invitation",
        "pt",
        "Open Source Summit",
        "summit-lisboa.example",
        "#5b3cc4",
        cards=8,
        single_quotes=True,
        greeting="Olá! Está convidado.",
        extra_text="開催地はリスボンです。Três dias de palestras e workshops.",
    ),
    Style(
        "daily-brief",
        "The Daily Brief: markets, science and culture",
        "en",
        "The Daily Brief",
        "dailybrief.example",
        "#1f2937",
        cards=56,
        upper_case=True,
    ),
    Style(
        "cloudnest-product-update",
        "CloudNest product update: faster sync, new admin console",
        "fr",
        "CloudNest",
        "cloudnest.example",
        "#0f766e",
        cards=18,
        greeting="Bonjour,",
        extra_text="Les nouveautés de novembre : synchronisation deux fois plus rapide, console repensée.",
    ),
    Style(
        "wanderlust-travel-deals",
        "Wanderlust: 30 weekend escapes under €199",
        "en",
        "Wanderlust Travel",
        "wanderlust-travel.example",
        "#c2410c",
        cards=30,
        image_map=True,
    ),
)


def _q(style: Style, value: str) -> str:
    quote = "'" if style.single_quotes else '"'
    return f"{quote}{value}{quote}"


def _a(style: Style, href: str, inner: str, attributes: str = "") -> str:
    tag, attr = ("A", "HREF") if style.upper_case else ("a", "href")
    return f"<{tag} {attr}={_q(style, href)}{attributes}>{inner}</{tag}>"


def _tracked(style: Style, path: str, content: str, rng: random.Random) -> str:
    """A link with the campaign parameters email tools add: long, with ``&amp;`` in the raw HTML."""
    return (
        f"https://www.{style.domain}/{path}?utm_source=newsletter&amp;utm_medium=email&amp;utm_campaign="
        f"{style.name}&amp;utm_content={content}&amp;sc_cid={rng.randrange(10**8, 10**9)}"
    )


def _head(style: Style) -> str:
    return f"""<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" lang="{style.lang}" xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<meta name="x-apple-disable-message-reformatting">
<title>{style.title}</title>
<!--[if mso]>
<noscript><xml><o:OfficeDocumentSettings><o:AllowPNG/><o:PixelsPerInch>96</o:PixelsPerInch></o:OfficeDocumentSettings></xml></noscript>
<style>table,td,div,h1,p{{font-family:Arial,sans-serif}}</style>
<![endif]-->
<style type="text/css">
body{{margin:0;padding:0;-webkit-text-size-adjust:100%;background:#f4f4f5}}table{{border-collapse:collapse}}img{{border:0;line-height:100%;outline:none;text-decoration:none}}
a{{color:{style.accent}}}.btn a:hover{{opacity:.9}}
@media screen and (max-width:620px){{#main{{width:100%!important}}.col{{display:block!important;width:100%!important;max-width:100%!important}}.hide-mobile{{display:none!important}}}}
@media (prefers-color-scheme:dark){{body,#main{{background:#111827!important;color:#f9fafb!important}}a{{color:#93c5fd!important}}}}
</style>
</head>
"""


def _button(style: Style, href: str, label: str) -> str:
    """Outlook's VML button (its href only Outlook sees) and the anchor everyone else sees."""
    return f"""<div class="btn">
<!--[if mso]>
<v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" xmlns:w="urn:schemas-microsoft-com:office:word" href="{href}" style="height:46px;v-text-anchor:middle;width:240px;" arcsize="12%" stroke="f" fillcolor="{style.accent}">
<w:anchorlock/>
<center style="color:#ffffff;font-family:Arial,sans-serif;font-size:16px;font-weight:bold;">{label}</center>
</v:roundrect>
<![endif]-->
<!--[if !mso]><!-->
{_a(style, href, label, f' style="background:{style.accent};border-radius:6px;color:#ffffff;display:inline-block;font-size:16px;font-weight:bold;line-height:46px;text-align:center;text-decoration:none;width:240px;-webkit-text-size-adjust:none;"')}
<!--<![endif]-->
</div>"""


def _card(style: Style, number: int, rng: random.Random) -> str:
    name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    slug = name.lower().replace(" ", "-")
    price = rng.randrange(19, 400)
    href = _tracked(style, f"products/{slug}-{number}", f"card-{number:02d}", rng)
    image = f"https://cdn.{style.domain}/img/{slug}-{number}@2x.jpg"
    text = " ".join(rng.sample(SENTENCES, 2))
    return f"""<!--[if mso]><td width="300" valign="top"><![endif]-->
<div class="col" style="display:inline-block;vertical-align:top;width:100%;max-width:300px;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">
<tr><td style="padding:12px 12px 0 12px;">{_a(style, href, f'<img src="{image}" width="276" alt="{name}" style="display:block;width:100%;max-width:276px;height:auto;border-radius:4px;">')}</td></tr>
<tr><td style="padding:10px 12px 0 12px;font-family:Arial,Helvetica,sans-serif;font-size:17px;line-height:22px;font-weight:bold;color:#111827;">{_a(style, href, name, ' style="color:#111827;text-decoration:none;"')}</td></tr>
<tr><td style="padding:6px 12px 0 12px;font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:21px;color:#4b5563;">{text}&nbsp;<strong>€{price},00</strong></td></tr>
<tr><td style="padding:8px 12px 16px 12px;font-family:Arial,Helvetica,sans-serif;font-size:14px;">{_a(style, href.replace("card-", "cta-"), "Shop now&nbsp;&rarr;", f' style="color:{style.accent};font-weight:bold;"')}</td></tr>
</table>
</div>
<!--[if mso]></td><![endif]-->"""


def _cards(style: Style, rng: random.Random) -> str:
    rows = []
    for start in range(0, style.cards, 2):
        pair = "\n".join(_card(style, number, rng) for number in range(start, min(start + 2, style.cards)))
        rows.append(
            '<tr><td style="padding:0 12px;font-size:0;text-align:center;">\n'
            '<!--[if mso]><table role="presentation" width="600" cellpadding="0" cellspacing="0"><tr><![endif]-->\n'
            f"{pair}\n<!--[if mso]></tr></table><![endif]-->\n</td></tr>"
        )
    return "\n".join(rows)


def _image_map(style: Style, rng: random.Random) -> str:
    areas = "\n".join(
        f'<area shape="rect" coords="{x},0,{x + 150},120" href="{_tracked(style, f"destinations/{city}", f"map-{city}", rng)}" alt="{city.title()}">'
        for x, city in zip(range(0, 600, 150), ("lisbon", "porto", "seville", "valencia"), strict=True)
    )
    return f"""<tr><td style="padding:16px 24px;">
<img src="https://cdn.{style.domain}/img/map-iberia.png" width="600" height="120" alt="Iberian weekend escapes" usemap="#escapes" style="display:block;width:100%;height:auto;">
<map name="escapes">
{areas}
</map>
</td></tr>"""


def newsletter(style: Style) -> str:
    rng = random.Random(style.name)
    accent = style.accent
    nav = " &nbsp;|&nbsp; ".join(
        _a(
            style,
            _tracked(style, f"c/{section}", f"nav-{section}", rng),
            section.title(),
            ' style="color:#374151;text-decoration:none;"',
        )
        for section in ("new-in", "women", "men", "outdoor", "home", "sale")
    )
    social = "\n".join(
        _a(
            style,
            f"https://www.{network}.com/{style.domain.split('.')[0]}",
            f'<img src="https://cdn.{style.domain}/img/social-{network}.png" width="28" height="28" alt="{network.title()}">',
            ' style="display:inline-block;padding:0 6px;"',
        )
        for network in ("facebook", "instagram", "linkedin", "youtube", "tiktok")
    )
    body = f"""<body style="margin:0;padding:0;word-spacing:normal;background-color:#f4f4f5;">
<div style="display:none;font-size:1px;color:#f4f4f5;line-height:1px;max-height:0;max-width:0;opacity:0;overflow:hidden;">{style.title} &#8212; {style.extra_text or SENTENCES[0]}&nbsp;&zwnj;&nbsp;&zwnj;&nbsp;&zwnj;</div>
<div role="article" aria-roledescription="email" lang="{style.lang}" style="text-size-adjust:100%;-webkit-text-size-adjust:100%;-ms-text-size-adjust:100%;background-color:#f4f4f5;">
<a name="top" id="top"></a>
<!--[if mso]><table role="presentation" align="center" style="width:600px;"><tr><td><![endif]-->
<table id="main" role="presentation" width="600" align="center" cellpadding="0" cellspacing="0" border="0" style="width:100%;max-width:600px;margin:0 auto;background:#ffffff;">
<tr><td style="padding:10px 24px;font-family:Arial,sans-serif;font-size:12px;color:#6b7280;text-align:right;">{_a(style, _tracked(style, "newsletter/online", "mirror", rng), "View in your browser", ' style="color:#6b7280;"')}</td></tr>
<tr><td style="padding:20px 24px;text-align:center;">{_a(style, _tracked(style, "", "logo", rng), f'<img src="https://cdn.{style.domain}/img/logo.png" width="180" alt="{style.brand}" style="display:inline-block;">')}</td></tr>
<tr><td class="hide-mobile" style="padding:0 24px 16px 24px;font-family:Arial,sans-serif;font-size:13px;text-align:center;">{nav}</td></tr>
<tr><td style="padding:0;">{_a(style, _tracked(style, "campaign/hero", "hero-image", rng), f'<img src="https://cdn.{style.domain}/img/hero-1200x600.jpg" width="600" alt="{style.title}" style="display:block;width:100%;height:auto;">')}</td></tr>
<tr><td style="padding:28px 32px 8px 32px;font-family:Arial,sans-serif;">
<h1 style="margin:0 0 12px 0;font-size:28px;line-height:34px;color:#111827;">{style.title}</h1>
<p style="margin:0 0 12px 0;font-size:16px;line-height:24px;color:#374151;">{style.greeting} {style.extra_text} {" ".join(rng.sample(SENTENCES, 3))}</p>
<p style="margin:0;font-size:16px;line-height:24px;color:#374151;">Read the {_a(style, _tracked(style, "journal/field-notes", "story", rng), "field notes from our team")} or {_a(style, "#cards", "jump to the picks")}.</p>
</td></tr>
<tr><td style="padding:16px 32px 28px 32px;text-align:center;">
{_button(style, _tracked(style, "campaign/main", "main-cta", rng), "Discover the collection")}
</td></tr>
<tr><td id="cards" style="padding:0;"><table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">
{_cards(style, rng)}
</table></td></tr>
{_image_map(style, rng) if style.image_map else ""}
<tr><td style="padding:24px 32px;text-align:center;background:{accent};">
{_button(style, _tracked(style, "sale", "secondary-cta", rng), "See every offer")}
</td></tr>
<tr><td style="padding:24px 32px 8px 32px;text-align:center;">{social}</td></tr>
<tr><td style="padding:8px 32px 32px 32px;font-family:Arial,sans-serif;font-size:12px;line-height:18px;color:#6b7280;text-align:center;">
<p style="margin:0 0 8px 0;">&copy; 2026 {style.brand} &middot; 12 Quay Street &middot; Questions? {_a(style, f"mailto:hello@{style.domain}?subject=Newsletter%20question", f"hello@{style.domain}")} or {_a(style, "tel:+442071234567", "+44&nbsp;20&nbsp;7123&nbsp;4567")}</p>
<p style="margin:0;">{_a(style, _tracked(style, "account/preferences", "preferences", rng), "Email preferences")} &nbsp;&middot;&nbsp; {_a(style, f"https://www.{style.domain}/privacy", "Privacy")} &nbsp;&middot;&nbsp; {_a(style, f"https://www.{style.domain}/unsubscribe?list=weekly&amp;campaign={style.name}", "Unsubscribe")} &nbsp;&middot;&nbsp; {_a(style, "#top", "Back to top")}</p>
</td></tr>
</table>
<!--[if mso]></td></tr></table><![endif]-->
</div>
</body>
</html>
"""
    document = _head(style) + body
    return document.replace("\n", "\r\n") if style.crlf else document


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    for style in STYLES:
        document = newsletter(style)
        path = CORPUS / f"{style.name}.html"
        path.write_bytes(document.encode())
        print(
            f"{path.name}: {len(document.encode()) / 1024:.0f} KB, {document.count('href=') + document.count('HREF=')} hrefs"
        )


if __name__ == "__main__":
    main()
