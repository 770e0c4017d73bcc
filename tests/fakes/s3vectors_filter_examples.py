"""The S3 Vectors documentation's own metadata filter examples, as data: each filter exactly as the page
prints it, the metadata records it is applied to, and the ids that must match.

Every filter here is copied from the S3 User Guide page "Metadata filtering"
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/s3-vectors-metadata-filtering.html), the
revision that documents index modes (CLASSIC, ENHANCED) and ``$startsWith``: its section "Examples of
valid filterable metadata", the ``$eq`` row of its operator table (a stored list) and its section "Filter
constraints per query". ``documented`` is the text as printed (the tests check ``filter`` is that text
parsed); ``section`` names where it is printed. The page shows no filter with several keys in one object
(implicit ``$and`` across keys): its one implicit ``$and`` is "Multiple conditions on the same field".

The records are ours, chosen to put each filter against the cases the page leaves to read: a stored
list, a missing key, a case difference, the string ``"2020"`` beside the number ``2020``, ``2020.0``
beside ``2020``, a boolean where a string is usual. ``matches`` was worked out by hand from the page (no
code computes it). Where the page is silent, ``matches`` follows the reading that
tests/fakes/s3vectors.py and runtime/libraries/filter_eval.py both state (a stored list holds when any element
does, for every operator; ``$ne`` / ``$nin`` hold where the key is missing and are the exact negation of
``$eq`` / ``$in``; numbers compare only with numbers, and types never mix), and ``undocumented`` names
each record whose answer rests on that reading, in or out, and why. Those answers are ours, not the
service's.
"""

from __future__ import annotations

from typing import Any

FILTERING_PAGE = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/s3-vectors-metadata-filtering.html"
INDEX_MODE_PAGE = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/s3-vectors-index-mode.html"

SOURCES: dict[str, dict[str, str]] = {
    "examples": {
        "title": "Metadata filtering - Amazon Simple Storage Service (S3 User Guide)",
        "part": "Examples of valid filterable metadata",
        "url": FILTERING_PAGE + "#s3-vectors-metadata-filtering-examples",
    },
    "operators": {
        "title": "Metadata filtering - Amazon Simple Storage Service (S3 User Guide)",
        "part": "Filterable metadata (the operator table)",
        "url": FILTERING_PAGE + "#s3-vectors-metadata-filtering-filterable",
    },
    "constraints": {
        "title": "Metadata filtering - Amazon Simple Storage Service (S3 User Guide)",
        "part": "Filter constraints per query",
        "url": FILTERING_PAGE + "#s3-vectors-metadata-filtering-constraints",
    },
    "index_mode": {
        "title": "Changing a vector index's mode - Amazon Simple Storage Service (S3 User Guide)",
        "part": "the whole page ($startsWith needs ENHANCED)",
        "url": INDEX_MODE_PAGE,
    },
}

# --- the records ---------------------------------------------------------------------------

MOVIES: dict[str, dict[str, Any]] = {
    "doc_2020": {"genre": "documentary", "year": 2020},
    "doc_romance_2022": {"genre": ["documentary", "romance"], "year": 2022},
    "Doc_cased_2020f": {"genre": "Documentary", "year": 2020.0},
    "drama_2021": {"genre": "drama", "year": 2021},
    "drama_2019": {"genre": "drama", "year": 2019},
    "drama_2019_5": {"genre": "drama", "year": 2019.5},
    "drama_no_year": {"genre": "drama"},
    "comedy_2018": {"genre": "comedy", "year": 2018},
    "comedy_drama_2020": {"genre": ["comedy", "drama"], "year": 2020},
    "thriller_text_year": {"genre": "thriller", "year": "2020"},
    "no_genre_2023": {"year": 2023},
    "bool_genre_2019": {"genre": True, "year": 2019},
    "horror_years_list": {"genre": "horror", "year": [2015, 2024]},
    "bare": {},
}
"""genre / year, the page's own keys: lists, missing keys, "Documentary", "2020" and 2020.0, a boolean genre."""

CATEGORIES: dict[str, dict[str, Any]] = {
    "documentary_romance": {"category": ["documentary", "romance"]},
    "documentary": {"category": "documentary"},
    "romance_drama": {"category": ["romance", "drama"]},
    "documentary_series": {"category": "documentary-series"},
    "Documentary_cased": {"category": ["Documentary"]},
    "genre_only": {"genre": "documentary"},
}
"""The operator table's ``$eq`` example: its own record ``"category": ["documentary", "romance"]`` first."""

PATHS: dict[str, dict[str, Any]] = {
    "campaign": {"s3_path": "/marketing/2024/campaign.png"},
    "folder_itself": {"s3_path": "/marketing/"},
    "no_trailing_slash": {"s3_path": "/marketing"},
    "cased": {"s3_path": "/Marketing/logo.png"},
    "relative": {"s3_path": "marketing/logo.png"},
    "nested_elsewhere": {"s3_path": "/sales/marketing/deck.png"},
    "unicode": {"s3_path": "/marketing/日本/ポスター.png"},
    "paths_list": {"s3_path": ["/sales/a.png", "/marketing/b.png"]},
    "number_path": {"s3_path": 42},
    "no_path": {"genre": "documentary"},
}
"""The prefix example's ``s3_path``: the prefix itself, one character short, case, a list, a number."""

PRODUCTS: dict[str, dict[str, Any]] = {
    "p10": {"price": 10, "category": "electronics", "region": "us-east-1"},
    "p50": {"price": 50, "category": "electronics", "region": "eu-west-1"},
    "p9_99": {"price": 9.99, "category": "books", "region": "us-west-2"},
    "p50_01": {"price": 50.01, "category": "electronics", "region": "ap-south-1"},
    "p30_text": {"price": "30", "category": "books", "region": "us-east-1"},
    "p500": {"price": 500, "category": "electronics", "region": "us-west-2"},
    "p501": {"price": 501, "category": "electronics", "region": ["us-east-1", "eu-west-1"]},
    "p_split": {"price": [5, 60], "category": ["electronics", "books"], "region": "sa-east-1"},
    "p0_cased": {"price": 0, "category": "Electronics", "region": "US-EAST-1"},
    "p_no_price": {"category": "electronics"},
    "p_bool": {"price": True, "category": "toys", "region": "eu-west-1"},
}
"""price / category / region, the keys of the price range and the constraints section: both ends of the
range, just outside them, "30", true, a list of prices on both sides of the range."""

# --- the examples --------------------------------------------------------------------------

LIST_ANY = "a stored list holds when any element does (the page says so for $eq only)"
MISSING_NE = "$ne / $nin hold where the key is missing (the page does not say)"
LIST_NOT_ANY = "$ne / $nin on a stored list: no element may be equal (the negation of $eq / $in)"
TEXT_NUMBER = 'numbers compare only with numbers: the string "2020" is not 2020 (the page gives Number only)'

EXAMPLES: list[dict[str, Any]] = [
    {
        "name": "simple_equality",
        "source": "examples",
        "section": "Simple equality",
        "documented": '{"genre": "documentary"}',
        "filter": {"genre": "documentary"},
        "records": MOVIES,
        "matches": ["doc_2020", "doc_romance_2022"],
        "undocumented": {},
        "notes": "No operator is $eq (the page says so). A list holds by any element (the $eq row). Case counts.",
    },
    {
        "name": "explicit_eq",
        "source": "examples",
        "section": "Explicit equality (Example: Exact match)",
        "documented": '{"genre": {"$eq": "documentary"}}',
        "filter": {"genre": {"$eq": "documentary"}},
        "records": MOVIES,
        "matches": ["doc_2020", "doc_romance_2022"],
        "undocumented": {},
        "notes": "The same ids as the implicit form.",
    },
    {
        "name": "explicit_ne",
        "source": "examples",
        "section": "Explicit equality (Example: Not equal to)",
        "documented": '{"genre": {"$ne": "drama"}}',
        "filter": {"genre": {"$ne": "drama"}},
        "records": MOVIES,
        "matches": [
            "doc_2020",
            "doc_romance_2022",
            "Doc_cased_2020f",
            "comedy_2018",
            "thriller_text_year",
            "no_genre_2023",
            "bool_genre_2019",
            "horror_years_list",
            "bare",
        ],
        "undocumented": {
            "no_genre_2023": MISSING_NE,
            "bare": MISSING_NE,
            "comedy_drama_2020": LIST_NOT_ANY,
            "doc_romance_2022": LIST_NOT_ANY,
        },
        "notes": 'true is not equal to "drama".',
    },
    {
        "name": "gt",
        "source": "examples",
        "section": "Numeric comparison",
        "documented": '{"year": {"$gt": 2019}}',
        "filter": {"year": {"$gt": 2019}},
        "records": MOVIES,
        "matches": [
            "doc_2020",
            "doc_romance_2022",
            "Doc_cased_2020f",
            "drama_2021",
            "drama_2019_5",
            "comedy_drama_2020",
            "no_genre_2023",
            "horror_years_list",
        ],
        "undocumented": {"thriller_text_year": TEXT_NUMBER, "horror_years_list": LIST_ANY},
        "notes": "2019 itself is out; 2019.5 and 2020.0 are numbers.",
    },
    {
        "name": "gte",
        "source": "examples",
        "section": "Numeric comparison",
        "documented": '{"year": {"$gte": 2020}}',
        "filter": {"year": {"$gte": 2020}},
        "records": MOVIES,
        "matches": [
            "doc_2020",
            "doc_romance_2022",
            "Doc_cased_2020f",
            "drama_2021",
            "comedy_drama_2020",
            "no_genre_2023",
            "horror_years_list",
        ],
        "undocumented": {"thriller_text_year": TEXT_NUMBER, "horror_years_list": LIST_ANY},
        "notes": "2020 and 2020.0 are in, 2019.5 is out.",
    },
    {
        "name": "lt",
        "source": "examples",
        "section": "Numeric comparison",
        "documented": '{"year": {"$lt": 2020}}',
        "filter": {"year": {"$lt": 2020}},
        "records": MOVIES,
        "matches": ["drama_2019", "drama_2019_5", "comedy_2018", "bool_genre_2019", "horror_years_list"],
        "undocumented": {"thriller_text_year": TEXT_NUMBER, "horror_years_list": LIST_ANY},
        "notes": "2020.0 is not below 2020.",
    },
    {
        "name": "lte",
        "source": "examples",
        "section": "Numeric comparison",
        "documented": '{"year": {"$lte": 2020}}',
        "filter": {"year": {"$lte": 2020}},
        "records": MOVIES,
        "matches": [
            "doc_2020",
            "Doc_cased_2020f",
            "drama_2019",
            "drama_2019_5",
            "comedy_2018",
            "comedy_drama_2020",
            "bool_genre_2019",
            "horror_years_list",
        ],
        "undocumented": {"thriller_text_year": TEXT_NUMBER, "horror_years_list": LIST_ANY},
        "notes": "A missing year never compares.",
    },
    {
        "name": "starts_with",
        "source": "examples",
        "section": "Prefix match",
        "documented": '{"s3_path": {"$startsWith": "/marketing/"}}',
        "filter": {"s3_path": {"$startsWith": "/marketing/"}},
        "records": PATHS,
        "matches": ["campaign", "folder_itself", "unicode", "paths_list"],
        "undocumented": {
            "paths_list": LIST_ANY,
            "cased": "a prefix is compared character for character, so case counts (the page does not say)",
        },
        "requires": "ENHANCED",
        "also": "index_mode",
        "notes": (
            "Values that begin with the string (the page's words); a value contained elsewhere is out. Needs an "
            "ENHANCED index, or queryMode ENHANCED on a CLASSIC one (the page, and the index-mode page)."
        ),
    },
    {
        "name": "in",
        "source": "examples",
        "section": "Array operations",
        "documented": '{"genre": {"$in": ["comedy", "documentary"]}}',
        "filter": {"genre": {"$in": ["comedy", "documentary"]}},
        "records": MOVIES,
        "matches": ["doc_2020", "doc_romance_2022", "comedy_2018", "comedy_drama_2020"],
        "undocumented": {"doc_romance_2022": LIST_ANY, "comedy_drama_2020": LIST_ANY},
        "notes": "Match any value in the array (the operator table).",
    },
    {
        "name": "nin",
        "source": "examples",
        "section": "Array operations",
        "documented": '{"genre": {"$nin": ["comedy", "documentary"]}}',
        "filter": {"genre": {"$nin": ["comedy", "documentary"]}},
        "records": MOVIES,
        "matches": [
            "Doc_cased_2020f",
            "drama_2021",
            "drama_2019",
            "drama_2019_5",
            "drama_no_year",
            "thriller_text_year",
            "no_genre_2023",
            "bool_genre_2019",
            "horror_years_list",
            "bare",
        ],
        "undocumented": {
            "no_genre_2023": MISSING_NE,
            "bare": MISSING_NE,
            "doc_romance_2022": LIST_NOT_ANY,
            "comedy_drama_2020": LIST_NOT_ANY,
        },
        "notes": "Match none of the values in the array (the operator table).",
    },
    {
        "name": "exists",
        "source": "examples",
        "section": "Existence check",
        "documented": '{"genre": {"$exists": true}}',
        "filter": {"genre": {"$exists": True}},
        "records": MOVIES,
        "matches": [
            "doc_2020",
            "doc_romance_2022",
            "Doc_cased_2020f",
            "drama_2021",
            "drama_2019",
            "drama_2019_5",
            "drama_no_year",
            "comedy_2018",
            "comedy_drama_2020",
            "thriller_text_year",
            "bool_genre_2019",
            "horror_years_list",
        ],
        "undocumented": {},
        "notes": "Has a genre key, regardless of the value stored (the page's words): true and lists too.",
    },
    {
        "name": "and",
        "source": "examples",
        "section": "Logical operations",
        "documented": '{"$and": [{"genre": {"$eq": "drama"}}, {"year": {"$gte": 2020}}]}',
        "filter": {"$and": [{"genre": {"$eq": "drama"}}, {"year": {"$gte": 2020}}]},
        "records": MOVIES,
        "matches": ["drama_2021", "comedy_drama_2020"],
        "undocumented": {},
        "notes": "A drama of 2019.5 or with no year is out; a list with drama is in (the $eq row).",
    },
    {
        "name": "or",
        "source": "examples",
        "section": "Logical operations",
        "documented": '{"$or": [{"genre": {"$eq": "drama"}}, {"year": {"$gte": 2020}}]}',
        "filter": {"$or": [{"genre": {"$eq": "drama"}}, {"year": {"$gte": 2020}}]},
        "records": MOVIES,
        "matches": [
            "doc_2020",
            "doc_romance_2022",
            "Doc_cased_2020f",
            "drama_2021",
            "drama_2019",
            "drama_2019_5",
            "drama_no_year",
            "comedy_drama_2020",
            "no_genre_2023",
            "horror_years_list",
        ],
        "undocumented": {"horror_years_list": LIST_ANY, "thriller_text_year": TEXT_NUMBER},
        "notes": "Either clause: a drama of any year, or any genre from 2020 on.",
    },
    {
        "name": "range_on_one_field",
        "source": "examples",
        "section": "Price range (Multiple conditions on the same field)",
        "documented": '{"price": {"$gte": 10, "$lte": 50}}',
        "filter": {"price": {"$gte": 10, "$lte": 50}},
        "records": PRODUCTS,
        "matches": ["p10", "p50", "p_split"],
        "undocumented": {
            "p_split": (
                "each operator holds by any element of a stored list on its own, so [5, 60] is in (60 >= 10, "
                "5 <= 50), though no single price lies in the range (the page does not say)"
            ),
            "p30_text": 'numbers compare only with numbers: "30" is not 30',
            "p_bool": "true is not a number",
        },
        "notes": "Both operators must hold (an implicit $and on one key); both ends are in.",
    },
    {
        "name": "eq_on_a_stored_list",
        "source": "operators",
        "section": "The $eq row of the operator table",
        "documented": '{"category": {"$eq": "documentary"}}',
        "filter": {"category": {"$eq": "documentary"}},
        "records": CATEGORIES,
        "matches": ["documentary_romance", "documentary"],
        "undocumented": {},
        "notes": 'The page: it "would match a vector with metadata "category": ["documentary", "romance"]".',
    },
    {
        "name": "constraints_one",
        "source": "constraints",
        "section": "Filter constraints per query (one constraint)",
        "documented": '{"category": "electronics"}',
        "filter": {"category": "electronics"},
        "records": PRODUCTS,
        "matches": ["p10", "p50", "p50_01", "p500", "p501", "p_split", "p_no_price"],
        "undocumented": {},
        "notes": 'Implicit $eq; a list by any element; "Electronics" is out.',
    },
    {
        "name": "constraints_in",
        "source": "constraints",
        "section": "Filter constraints per query (three constraints)",
        "documented": '{"region": {"$in": ["us-east-1", "us-west-2", "eu-west-1"]}}',
        "filter": {"region": {"$in": ["us-east-1", "us-west-2", "eu-west-1"]}},
        "records": PRODUCTS,
        "matches": ["p10", "p50", "p9_99", "p30_text", "p500", "p501", "p_bool"],
        "undocumented": {"p501": LIST_ANY},
        "notes": '"US-EAST-1" is out; a missing region is out.',
    },
    {
        "name": "constraints_and",
        "source": "constraints",
        "section": "Filter constraints per query (two constraints)",
        "documented": '{"$and": [{"category": "electronics"}, {"price": {"$lte": 500}}]}',
        "filter": {"$and": [{"category": "electronics"}, {"price": {"$lte": 500}}]},
        "records": PRODUCTS,
        "matches": ["p10", "p50", "p50_01", "p500", "p_split"],
        "undocumented": {"p_split": LIST_ANY},
        "notes": "501 is over; a product with no price never compares.",
    },
]
"""Every filter example on the page, in its order, then the operator table's and the constraints section's."""

OPERATORS = frozenset(
    {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$and", "$or", "$startsWith"}
)
"""The page's operators; its examples use every one."""
