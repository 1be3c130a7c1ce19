"""Synthetic document pages with exact ground truth, for end-to-end OCR tests and benchmarks.

Pages are A4 at a given dpi, drawn with real DejaVu fonts. Every block of text records where it was
drawn and what it says, in reading order, so OCR output can be scored against it (see `cer`, `wer`).
Text is plain English (`lang="en"`, the default), Russian (`"ru"`) or both mixed in one sentence
(`"mixed"`), made only of letters, digits, spaces and `. , ;` so the truth is unambiguous (no `ё`,
which fonts and readers often turn into `е`). Damage of real scans is in `bench/quality/damage.py`.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
BODY_FONT = "DejaVuSerif.ttf"
TITLE_FONT = "DejaVuSans-Bold.ttf"
TABLE_FONT = "DejaVuSans.ttf"
TABLE_HEADER_FONT = "DejaVuSans-Bold.ttf"

A4_MM = (210.0, 297.0)
MARGIN_IN = 1.0
BODY_PT = 11.5  # 24 px at 150 dpi
TITLE_SCALE = 1.8
LINE_SPACING = 1.4  # baseline-to-baseline distance, in font sizes
GUTTER_IN = 0.6  # 90 px at 150 dpi: wide enough that columns cannot be mistaken for one line
HEADER_FILL = (225, 225, 225)

# Plain sentences: no quotes, hyphens, apostrophes or long digit runs, so the ground truth is unambiguous.
SENTENCES = (
    "The committee met on Tuesday morning to review the budget for the coming year.",
    "Most of the proposals were approved, although two of them will need more work before spring.",
    "Rain fell steadily over the valley, and the river rose slowly through the night.",
    "Farmers in the northern district reported a good harvest despite the late frost.",
    "The new library opened its doors in March and now welcomes more than 900 visitors a week.",
    "Children can borrow up to six books at a time, and the reading room stays open until eight.",
    "Our team measured the temperature of the water every hour for three days.",
    "The results show a clear pattern; the water was warmest shortly after noon.",
    "Trains between the two cities now run every twenty minutes during the day.",
    "Passengers are asked to keep their tickets until they leave the station.",
    "The museum has collected old maps, letters and photographs from the region for many years.",
    "A small exhibition of these items will travel to several schools this autumn.",
    "Good soil holds water well, yet it also lets the roots of plants breathe.",
    "Gardeners often add compost in the autumn so that it can settle over the winter.",
    "The bridge was painted green many years ago and has kept the same colour ever since.",
    "Engineers inspect its steel cables twice a year, usually in April and October.",
    "Several readers wrote to the editor about the noise from the building site.",
    "The council replied that work would stop at six in the evening on weekdays.",
    "Fresh bread is baked in the village every morning before the sun comes up.",
    "The baker sells most of it by nine, so late customers often leave with nothing.",
    "Birds return to the lake each spring, and some of them stay until the first snow.",
    "Volunteers count them every weekend and share the numbers with the local society.",
    "The report describes how the company reduced its energy use by a quarter.",
    "Much of the saving came from better windows, new lights and a smarter heating plan.",
    "A short walk along the coast leads to a quiet beach with fine white sand.",
    "Visitors should check the tide tables, since the path is closed at high water.",
    "The orchestra will perform three concerts in the old hall this summer.",
    "Tickets go on sale next Monday, and students may buy them at half price.",
    "Clear instructions help people finish a task quickly and with fewer mistakes.",
    "Each step should describe one action, and the steps should follow a logical order.",
    "The harbour was busy with fishing boats, ferries and a few small sailing yachts.",
    "Every evening the boats come back with their catch, which is sold at the market.",
    "The school garden produces beans, potatoes and tomatoes for the kitchen.",
    "Pupils take turns watering the beds, and they keep a diary of what grows.",
    "Mountain roads can be dangerous in winter, so drivers carry chains and extra food.",
    "The pass is usually closed from December until the end of March.",
    "A good map shows not only roads and rivers but also the shape of the land.",
    "Lines drawn close together mean a steep slope; lines far apart mean gentle ground.",
    "The factory produces about 400 chairs a month, most of them made from local oak.",
    "Its workers learn the craft over several years, starting with simple joints.",
)

TITLES = (
    "Annual Report of the Town Council",
    "Notes on the River Valley",
    "A Guide to the New Library",
    "Field Study of Water Temperature",
    "Travel and Transport in the Region",
    "The Village Bakery",
    "Birds of the Northern Lakes",
    "Energy Savings at the Plant",
    "Summer Concerts in the Old Hall",
    "Life in the Harbour",
)

HEADER_WORDS = (
    "Item", "Region", "Count", "Price", "Status", "Owner", "Weight", "Colour",
    "Size", "Code", "Month", "Total", "Group", "Level", "Stock", "Notes",
)  # fmt: skip

CELL_WORDS = (
    "apple", "river", "garden", "window", "silver", "market", "forest", "candle",
    "harbour", "meadow", "pencil", "basket", "copper", "lantern", "orange", "valley",
    "bridge", "winter", "summer", "island", "castle", "ribbon", "mirror", "thunder",
    "garlic", "pepper", "violet", "marble", "saddle", "timber", "anchor", "button",
    "cotton", "dragon", "engine", "feather", "glacier", "hammer", "jacket", "kettle",
    "ladder", "monkey", "needle", "office", "parrot", "rabbit", "salmon", "tunnel",
    "velvet", "walnut", "yellow", "zebra", "blanket", "cabinet", "dolphin", "falcon",
    "granite", "helmet", "journal", "kitchen", "lemon", "mango", "nickel", "oyster",
    "planet", "quartz", "rocket", "spider", "tiger", "umbrella", "violin", "wagon",
)  # fmt: skip


SENTENCES_RU = (
    "Комитет собрался во вторник утром, чтобы обсудить бюджет на следующий год.",
    "Большинство предложений одобрили, хотя два из них потребуют доработки до весны.",
    "Над долиной весь день шел дождь, и к ночи река медленно поднялась.",
    "Фермеры северного района собрали хороший урожай, несмотря на поздние заморозки.",
    "Новая библиотека открылась в марте и теперь принимает более 900 читателей в неделю.",
    "Дети могут взять до шести книг сразу, а читальный зал работает до восьми вечера.",
    "Наша группа измеряла температуру воды каждый час в течение трех дней.",
    "Результаты показывают ясную картину; вода была теплее всего вскоре после полудня.",
    "Поезда между двумя городами теперь ходят каждые двадцать минут.",
    "Пассажиров просят сохранять билеты до выхода из вокзала.",
    "Музей много лет собирает старые карты, письма и фотографии края.",
    "Небольшая выставка этих предметов осенью побывает в нескольких школах.",
    "Хорошая почва удерживает воду и при этом дает корням растений дышать.",
    "Садоводы часто вносят компост осенью, чтобы он успел осесть за зиму.",
    "Мост покрасили в зеленый цвет много лет назад, и с тех пор цвет не менялся.",
    "Инженеры проверяют его стальные тросы дважды в год, обычно в апреле и октябре.",
    "Несколько читателей написали в редакцию о шуме со стройки.",
    "Совет ответил, что по будням работы будут прекращаться в шесть вечера.",
    "Свежий хлеб в деревне пекут каждое утро еще до восхода солнца.",
    "Пекарь продает почти все к девяти, поэтому поздние покупатели уходят ни с чем.",
    "Птицы возвращаются на озеро каждую весну, и некоторые остаются до первого снега.",
    "Волонтеры считают их по выходным и передают данные местному обществу.",
    "В отчете описано, как компания сократила расход энергии на четверть.",
    "Большую часть экономии дали новые окна, лампы и разумный график отопления.",
    "Короткая прогулка вдоль берега ведет к тихому пляжу с белым песком.",
    "Перед прогулкой стоит узнать время прилива, так как тропу закрывают.",
    "Этим летом оркестр даст три концерта в старом зале.",
    "Билеты поступят в продажу в понедельник, а студенты купят их за полцены.",
    "Понятные инструкции помогают быстро выполнить задачу и реже ошибаться.",
    "Каждый шаг должен описывать одно действие, а шаги должны идти по порядку.",
    "В гавани было много рыбацких лодок, паромов и небольших яхт.",
    "Каждый вечер лодки возвращаются с уловом, который продают на рынке.",
    "Школьный огород дает фасоль, картофель и помидоры для столовой.",
    "Ученики по очереди поливают грядки и ведут дневник наблюдений.",
    "Зимой горные дороги опасны, поэтому водители возят цепи и запас еды.",
    "Перевал обычно закрыт с декабря до конца марта.",
    "Хорошая карта показывает не только дороги и реки, но и рельеф местности.",
    "Фабрика выпускает около 400 стульев в месяц, в основном из местного дуба.",
)

# Russian prose with English names and terms inside sentences, as real Russian documents have them.
SENTENCES_MIXED = (
    "Сервер Apache обрабатывает запросы быстрее, чем старая версия nginx.",
    "Отчет подготовлен в Microsoft Word и отправлен в отдел Marketing.",
    "Для анализа данных мы используем Python и библиотеку pandas.",
    "Компания Siemens поставила новое оборудование для цеха в мае.",
    "Встреча с командой Google Cloud назначена на четверг в десять утра.",
    "Модель работает на CPU без видеокарты и читает страницу за две секунды.",
    "Все документы хранятся в облаке Amazon и доступны по ссылке.",
    "Новый ноутбук Lenovo ThinkPad выдали каждому инженеру отдела.",
    "Клиенты оплачивают заказ через Visa или Mastercard на сайте магазина.",
    "Статья вышла в журнале Nature и вызвала большой интерес.",
    "Мы перенесли базу данных PostgreSQL на новый сервер в Frankfurt.",
    "Курс английского языка ведет преподаватель из London.",
    "Приложение доступно в App Store и Google Play с прошлой недели.",
    "Для сборки проекта нужны Docker и около 4 гигабайт свободной памяти.",
    "Фильм показали на фестивале в Berlin, и он получил приз зрителей.",
    "Отдел продаж каждый месяц готовит отчет в Excel для директора.",
)

TITLES_RU = (
    "Годовой отчет городского совета",
    "Заметки о речной долине",
    "Путеводитель по новой библиотеке",
    "Измерения температуры воды",
    "Транспорт в нашем регионе",
    "Деревенская пекарня",
    "Птицы северных озер",
    "Экономия энергии на заводе",
    "Летние концерты в старом зале",
    "Жизнь в гавани",
)

TITLES_MIXED = (
    "Отчет о переходе на Linux",
    "Работа с облаком Amazon",
    "Обзор сервиса Google Cloud",
    "Итоги проекта Apollo",
    "Новости отдела Marketing",
)

HEADER_WORDS_RU = (
    "Товар", "Регион", "Число", "Цена", "Статус", "Владелец", "Вес", "Цвет",
    "Размер", "Код", "Месяц", "Итого", "Группа", "Уровень", "Склад", "Заметки",
)  # fmt: skip

CELL_WORDS_RU = (
    "яблоко", "река", "сад", "окно", "серебро", "рынок", "лес", "свеча",
    "гавань", "луг", "карандаш", "корзина", "медь", "фонарь", "апельсин", "долина",
    "мост", "зима", "лето", "остров", "замок", "лента", "зеркало", "гром",
    "чеснок", "перец", "фиалка", "мрамор", "седло", "бревно", "якорь", "пуговица",
    "хлопок", "дракон", "двигатель", "перо", "ледник", "молоток", "куртка", "чайник",
    "лестница", "обезьяна", "иголка", "контора", "попугай", "кролик", "лосось", "тоннель",
)  # fmt: skip


@dataclass(frozen=True)
class Texts:
    """What a page in one language is written with."""

    sentences: tuple[str, ...]
    titles: tuple[str, ...]
    headers: tuple[str, ...]
    cell_words: tuple[str, ...]


LANGUAGES = {
    "en": Texts(SENTENCES, TITLES, HEADER_WORDS, CELL_WORDS),
    "ru": Texts(SENTENCES_RU, TITLES_RU, HEADER_WORDS_RU, CELL_WORDS_RU),
    # Mixed pages: mixed sentences among Russian ones, so both scripts sit in every paragraph.
    "mixed": Texts(
        SENTENCES_MIXED + SENTENCES_RU[:16], TITLES_MIXED, HEADER_WORDS, CELL_WORDS_RU + CELL_WORDS
    ),
}
BODY_FONTS = ("DejaVuSerif.ttf", "DejaVuSans.ttf", "DejaVuSansCondensed.ttf", "DejaVuSerifCondensed.ttf")


def _texts(lang: str) -> Texts:
    try:
        return LANGUAGES[lang]
    except KeyError:
        raise ValueError(f"unknown page language {lang!r}; known: {', '.join(LANGUAGES)}") from None


@dataclass
class TruthBlock:
    kind: str  # "title" | "paragraph" | "table"
    text: str  # for tables: cells joined by spaces row by row
    bbox: tuple[int, int, int, int]  # (left, top, right, bottom) of what was drawn, in pixels
    cells: list[list[str]] | None = None  # tables only: rows of cell texts, header row first


@dataclass
class SyntheticPage:
    image: Image.Image  # RGB, white background
    blocks: list[TruthBlock]  # in the correct reading order

    @property
    def text(self) -> str:
        return "\n".join(block.text for block in self.blocks)


# ---------------------------------------------------------------- fonts and measures


@cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    for folder in FONT_DIRS:
        path = folder / name
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    raise FileNotFoundError(f"font {name} not found in {', '.join(map(str, FONT_DIRS))} (apt: fonts-dejavu)")


def _px(dpi: int, points: float) -> int:
    return max(1, round(points * dpi / 72))


def _union(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """Greedy word wrap by rendered width; a word wider than `width` gets a line of its own."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if current and font.getlength(candidate) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


# ---------------------------------------------------------------- page layout


class _Canvas:
    """A blank A4 page with a text cursor; blocks are drawn top to bottom and recorded as truth."""

    def __init__(self, dpi: int, font: str = BODY_FONT, body_pt: float = BODY_PT) -> None:
        self.dpi = dpi
        size = tuple(round(mm / 25.4 * dpi) for mm in A4_MM)
        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image)
        margin = round(MARGIN_IN * dpi)
        self.left, self.top = margin, margin
        self.right, self.bottom = size[0] - margin, size[1] - margin
        self.y = self.top
        self.body = _font(font, _px(dpi, body_pt))
        self.line_h = round(self.body.size * LINE_SPACING)
        self.blocks: list[TruthBlock] = []

    @property
    def width(self) -> int:
        return self.right - self.left

    def lines(self, kind: str, lines: list[str], font: ImageFont.FreeTypeFont, x: int, y: int) -> int:
        """Draw lines on a fixed baseline grid from top `y`; record one block; return the bottom y."""
        line_h = round(font.size * LINE_SPACING)
        bottom = y + len(lines) * line_h
        if bottom > self.bottom:
            raise ValueError("text does not fit on one A4 page")
        ascent = font.getmetrics()[0]
        boxes = []
        for i, line in enumerate(lines):
            origin = (x, y + i * line_h + ascent)
            self.draw.text(origin, line, font=font, fill="black", anchor="ls")
            boxes.append(self.draw.textbbox(origin, line, font=font, anchor="ls"))
        self.blocks.append(TruthBlock(kind, " ".join(lines), _union(boxes)))
        return bottom

    def title(self, text: str) -> None:
        font = _font(TITLE_FONT, round(self.body.size * TITLE_SCALE))
        self.y = self.lines("title", _wrap(text, font, self.width), font, self.left, self.y)
        self.y += self.line_h  # a blank body line under the title

    def paragraph(self, text: str) -> None:
        lines = _wrap(text, self.body, self.width)
        if lines:
            self.y = self.lines("paragraph", lines, self.body, self.left, self.y) + self.line_h

    def page(self) -> SyntheticPage:
        return SyntheticPage(self.image, self.blocks)


def _paragraphs(
    rng: random.Random, count: int, sentences: tuple[int, int], source: tuple[str, ...] = SENTENCES
) -> list[str]:
    """`count` paragraphs of a random number of sentences each; no sentence is used twice on a page."""
    sizes = [rng.randint(*sentences) for _ in range(count)]
    pool = rng.sample(source, sum(sizes))
    out = []
    for size in sizes:
        out.append(" ".join(pool[:size]))
        pool = pool[size:]
    return out


# ---------------------------------------------------------------- tables


def _table_cells(rng: random.Random, rows: int, cols: int, texts: Texts = LANGUAGES["en"]) -> list[list[str]]:
    """A header row, then `rows` rows: words in the first column, numbers and words alternating after it."""
    number_cols = len(range(1, cols, 2))
    word_count = rows * (cols - number_cols)
    if cols > len(texts.headers) or word_count > len(texts.cell_words):
        raise ValueError(f"table too large: {rows}x{cols}")
    words = iter(rng.sample(texts.cell_words, word_count))
    numbers = iter(rng.sample(range(10, 1000), rows * number_cols))  # two or three digits, never long runs
    body = [
        [str(next(numbers)) if c % 2 else next(words).capitalize() for c in range(cols)] for _ in range(rows)
    ]
    return [list(rng.sample(texts.headers, cols)), *body]


def _table_font(cells: list[list[str]], size: int, width: int) -> tuple[ImageFont.FreeTypeFont, list[float]]:
    """The largest font, up to `size`, at which the columns fit in `width`; and their natural widths."""
    while True:
        font = _font(TABLE_HEADER_FONT, size)  # bold is the wider face: measure with it
        pad = size * 0.6
        natural = [max(font.getlength(row[c]) for row in cells) + 2 * pad for c in range(len(cells[0]))]
        if sum(natural) <= width or size <= 8:
            return font, natural
        size -= 1


def _draw_table(canvas: _Canvas, cells: list[list[str]]) -> None:
    """A ruled table: every cell bordered, bold header on a light fill, columns filling the text width."""
    bold, natural = _table_font(cells, canvas.body.size, canvas.width)
    regular = _font(TABLE_FONT, bold.size)
    extra = max(0.0, (canvas.width - sum(natural)) / len(natural))
    xs = [canvas.left]
    for w in natural:
        xs.append(xs[-1] + round(w + extra))
    row_h = round(bold.size * 2.0)
    ys = [canvas.y + r * row_h for r in range(len(cells) + 1)]
    if ys[-1] > canvas.bottom:
        raise ValueError("table does not fit on one A4 page")
    rule = max(1, round(2 * canvas.dpi / 150))  # 2 px at 150 dpi
    canvas.draw.rectangle((xs[0], ys[0], xs[-1], ys[1]), fill=HEADER_FILL)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            origin = (xs[c] + round(bold.size * 0.6), (ys[r] + ys[r + 1]) // 2)
            canvas.draw.text(origin, cell, font=bold if r == 0 else regular, fill="black", anchor="lm")
    # Rules are filled rectangles centred on the grid lines so that corners join without gaps.
    lo, hi = -(rule // 2), rule - rule // 2 - 1
    for y in ys:
        canvas.draw.rectangle((xs[0] + lo, y + lo, xs[-1] + hi, y + hi), fill="black")
    for x in xs:
        canvas.draw.rectangle((x + lo, ys[0] + lo, x + hi, ys[-1] + hi), fill="black")
    bbox = (xs[0] + lo, ys[0] + lo, xs[-1] + hi + 1, ys[-1] + hi + 1)
    text = " ".join(cell for row in cells for cell in row)
    canvas.blocks.append(TruthBlock("table", text, bbox, cells=[list(row) for row in cells]))
    canvas.y = ys[-1] + canvas.line_h


# ---------------------------------------------------------------- public page generators


def english_page(
    seed: int = 0, dpi: int = 150, *, lang: str = "en", font: str = BODY_FONT, body_pt: float = BODY_PT
) -> SyntheticPage:
    """A bold title and three paragraphs of plain prose (English unless `lang` says), several lines each."""
    texts = _texts(lang)
    rng = random.Random(seed)
    canvas = _Canvas(dpi, font, body_pt)
    canvas.title(rng.choice(texts.titles))
    for text in _paragraphs(rng, 3, (3, 5), texts.sentences):
        canvas.paragraph(text)
    return canvas.page()


def prose_page(lang: str, seed: int = 0, dpi: int = 150, **kwargs: object) -> SyntheticPage:
    """`english_page` in any language of `LANGUAGES`."""
    return english_page(seed, dpi, lang=lang, **kwargs)  # type: ignore[arg-type]


def two_column_page(
    seed: int = 0, dpi: int = 150, *, lang: str = "en", font: str = BODY_FONT, body_pt: float = BODY_PT
) -> SyntheticPage:
    """A full-width title over two columns of two paragraphs each.

    Both columns sit on one baseline grid (paragraph gaps are whole blank lines), so a reader that
    sorts lines top to bottom interleaves them; reading order is the left column, then the right.
    """
    source = _texts(lang)
    rng = random.Random(seed)
    canvas = _Canvas(dpi, font, body_pt)
    canvas.title(rng.choice(source.titles))
    gutter = round(GUTTER_IN * dpi)
    col_w = (canvas.width - gutter) // 2
    texts = _paragraphs(rng, 4, (3, 4), source.sentences)
    bottom = canvas.y
    for x, column in ((canvas.left, texts[:2]), (canvas.right - col_w, texts[2:])):
        y = canvas.y
        for text in column:
            y = canvas.lines("paragraph", _wrap(text, canvas.body, col_w), canvas.body, x, y) + canvas.line_h
        bottom = max(bottom, y)
    canvas.y = bottom
    return canvas.page()


def table_page(
    rows: int = 5,
    cols: int = 4,
    seed: int = 0,
    dpi: int = 150,
    *,
    lang: str = "en",
    font: str = BODY_FONT,
    body_pt: float = BODY_PT,
) -> SyntheticPage:
    """A title, a short paragraph, then a ruled table of a header row plus `rows` rows of `cols` cells.

    Cell texts are distinct short words (of `lang`) and two or three digit numbers.
    """
    texts = _texts(lang)
    rng = random.Random(seed)
    canvas = _Canvas(dpi, font, body_pt)
    canvas.title(rng.choice(texts.titles))
    canvas.paragraph(_paragraphs(rng, 1, (2, 2), texts.sentences)[0])
    _draw_table(canvas, _table_cells(rng, rows, cols, texts))
    return canvas.page()


def page_with_text(lines: list[str], title: str | None = None, dpi: int = 150) -> SyntheticPage:
    """A page with an optional title and one wrapped paragraph per string; raises if it overflows A4."""
    canvas = _Canvas(dpi)
    if title:
        canvas.title(title)
    for text in lines:
        canvas.paragraph(text)
    return canvas.page()


def make_pdf(pages: list[Image.Image], dpi: int = 150) -> bytes:
    """A multi-page PDF of the images, one per page, sized so that `dpi` renders them back 1:1."""
    if not pages:
        raise ValueError("a PDF needs at least one page")
    images = [page.convert("RGB") for page in pages]
    buffer = io.BytesIO()
    # Pillow embeds RGB as JPEG; a high quality keeps thin strokes free of visible artefacts.
    images[0].save(
        buffer, format="PDF", save_all=True, append_images=images[1:], resolution=float(dpi), quality=95
    )
    return buffer.getvalue()


__all__ = [
    "BODY_FONTS",
    "LANGUAGES",
    "SyntheticPage",
    "TruthBlock",
    "cer",
    "english_page",
    "make_pdf",
    "page_with_text",
    "prose_page",
    "table_page",
    "two_column_page",
    "wer",
]


# ---------------------------------------------------------------- scoring


def _normalise(text: str) -> str:
    return " ".join(text.split())


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate: edit distance over the reference length, whitespace runs collapsed to one space.

    An empty reference scores 0.0 against an empty hypothesis and 1.0 against anything else.
    """
    ref, hyp = _normalise(reference), _normalise(hypothesis)
    if not ref:
        return float(bool(hyp))
    return Levenshtein.distance(ref, hyp) / len(ref)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: edit distance over whitespace-separated tokens over the reference word count."""
    ref, hyp = reference.split(), hypothesis.split()
    if not ref:
        return float(bool(hyp))
    return Levenshtein.distance(ref, hyp) / len(ref)
