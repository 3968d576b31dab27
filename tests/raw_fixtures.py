"""Small raw files in each source's exact format, written by the tests themselves."""
import gzip
import json
import os

KUAISAR_REC = """user_id,item_id,playing_time,duration_ms,time,timestamp,click,forward,like,follow,search,search_item_related
1,100,5000,10000,2023-05-22 10:00:00.000,1.6847424e+12,1,0,0,0,0,0
1,101,100,10000,2023-05-22 10:01:00.000,1684742460000.0,0,0,0,0,0,0
1,102,5000,10000,2023-05-22 10:02:00.000,1684742520000.0,1,0,0,0,0,0
1,103,5000,10000,2023-05-22 10:03:00.000,1684742580000.0,1,0,0,0,0,0
1,104,5000,10000,2023-05-22 10:04:00.000,1684742640000.0,1,0,0,0,0,0
1,105,5000,10000,2023-05-22 10:05:00.000,1684742700000.0,0,0,0,0,0,0
2,100,5000,10000,2023-05-22 11:00:00.000,1684746000000.0,1,0,0,0,0,0
2,103,5000,10000,2023-05-22 11:00:00.000,1684746000000.0,1,0,0,0,0,0
2,104,5000,10000,2023-05-22 11:05:00.000,1684746300000.0,1,0,0,0,0,0
2,102,5000,10000,2023-05-22 11:06:00.000,1684746360000.0,1,0,0,0,0,0
"""
KUAISAR_SRC = """user_id,search_session_id,search_session_time,search_session_timestamp,keyword,search_source,item_id,click_cnt,item_type
1,9,2023-05-22 09:59:00.000,1684742340000.0,"[20, 34, 3]",USER_INPUT,103,1,VIDEO
1,10,2023-05-22 10:02:30.000,1684742550000.0,[],USER_INPUT,101,0,VIDEO
2,11,2023-05-22 11:01:00.000,1684746060000.0,"[7]",USER_INPUT,105,2,VIDEO
"""
KUAISAR_ITEMS = """item_id,caption,author_id,item_type,upload_time,upload_type,first_level_category_id,second_level_category_id,third_level_category_id,fourth_level_category_id,first_level_category_name,second_level_category_name,third_level_category_name,fourth_level_category_name,first_level_category_name_en,second_level_category_name_en,third_level_category_name_en,fourth_level_category_name_en
100,"[20, 21]",5,VIDEO,2023-05-01,UPLOAD,1,11,111,0,美食,家常菜,红烧肉,,food,home cooking,braised pork,
101,[],0,VIDEO,2023-05-01,UPLOAD,2,21,211,0,游戏,手游,王者,,games,mobile,kings,
102,"[34]",6,VIDEO,2023-05-01,UPLOAD,1,12,121,0,美食,甜点,蛋糕,,food,dessert,cake,
103,"[3, 20]",5,VIDEO,2023-05-01,UPLOAD,1,11,112,0,美食,家常菜,鱼,,food,home cooking,fish,
104,"[9]",7,VIDEO,2023-05-01,UPLOAD,3,31,311,0,音乐,流行,民谣,,music,pop,folk,
105,"[7]",7,VIDEO,2023-05-01,UPLOAD,3,31,312,0,音乐,流行,摇滚,,music,pop,rock,
"""
KUAISAR_BAD_REC = """3,100,5000,10000,2023-05-22 10:00:00.000,notatime,1,0,0,0,0,0
3,abc,5000,10000,2023-05-22 10:00:00.000,1684742400000.0,1,0,0,0,0,0
3,100,5000
,100,5000,10000,2023-05-22 10:00:00.000,1684742400000.0,1,0,0,0,0,0
"""
KUAISAR_BAD_SRC = """3,12,2023-05-22 09:59:00.000,1684742340000.0,"[20, x]",USER_INPUT,103,1,VIDEO
"""


def write_kuaisar(d, bad=False):
    os.makedirs(d, exist_ok=True)
    rec = KUAISAR_REC + (KUAISAR_BAD_REC if bad else "")
    src = KUAISAR_SRC + (KUAISAR_BAD_SRC if bad else "")
    with open(os.path.join(d, "rec_inter.csv"), "w", encoding="utf-8") as f:
        f.write(rec)
    with open(os.path.join(d, "src_inter.csv"), "wb") as f:
        f.write(src.encode("utf-8"))
        if bad:
            f.write(b"3,13,x,1684742340000.0,[1],USER_INPUT,\xff\xfe,1,VIDEO\n")
    with open(os.path.join(d, "item_features.csv"), "w", encoding="utf-8") as f:
        f.write(KUAISAR_ITEMS)
    return d


def write_amazon(d, bad=False):
    os.makedirs(d, exist_ok=True)
    reviews = []
    for u, items in (("A1", ["B01", "B02", "B03", "B04", "B05"]),
                     ("A2", ["B02", "B03", "B01", "B05"]), ("A4", ["B06", "B07", "B08"])):
        for k, asin in enumerate(items):
            reviews.append(json.dumps({"reviewerID": u, "asin": asin, "overall": 5.0,
                                       "unixReviewTime": 1_400_000_000 + 86400 * k}))
    if bad:
        reviews += ['{"reviewerID": "A3", "asin": "B01"', '{"asin": "B01", "unixReviewTime": 1}',
                    '{"reviewerID": "A3", "asin": "B01", "unixReviewTime": "soon"}']
    with gzip.open(os.path.join(d, "Movies_and_TV_5.json.gz"), "wt", encoding="utf-8") as f:
        f.write("\n".join(reviews) + "\n")
    meta = [{"asin": f"B0{i}", "title": f"Space Movie {i}", "brand": "Acme",
             "category": ["Movies & TV", "Genre For Featured Categories", f"Sci-Fi {i % 2}"]}
            for i in range(1, 9)]
    with open(os.path.join(d, "meta_Movies_and_TV.json"), "w", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(m) for m in meta) + "\n")
    return d


def write_movielens_100k(d):
    os.makedirs(d, exist_ok=True)
    rows = []
    for u in (1, 2):
        for k, item in enumerate([1, 2, 3, 4, 5]):
            rows.append(f"{u}\t{item}\t{5 if (item + u) % 2 else 2}\t{881250949 + k * 60 + u}")
    with open(os.path.join(d, "u.data"), "w", encoding="latin-1") as f:
        f.write("\n".join(rows) + "\n")
    flags = lambda i: "|".join("1" if (j == i or j == 8) else "0" for j in range(19))  # noqa
    items = [f"{i}|{t}|01-Jan-1995||http://x|{flags(i)}" for i, t in
             enumerate(["Toy Story (1995)", "GoldenEye (1995)", "Café Society (1995)",
                        "Seven (1995)", "Amélie (2001)"], start=1)]
    with open(os.path.join(d, "u.item"), "w", encoding="latin-1") as f:
        f.write("\n".join(items) + "\n")
    return d


def write_movielens_1m(d):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "ratings.dat"), "w", encoding="latin-1") as f:
        for u in (1, 2):
            for k, item in enumerate([10, 20, 30, 40]):
                f.write(f"{u}::{item}::{4 if k % 2 == 0 else 3}::{978300760 + k}\n")
    with open(os.path.join(d, "movies.dat"), "w", encoding="latin-1") as f:
        f.write("10::Pokémon (1999)::Animation|Children's\n20::Heat (1995)::Action|Crime\n"
                "30::Casino (1995)::Drama|Thriller\n40::Sabrina (1995)::Comedy|Romance\n")
    return d


def write_events(d, bad=False):
    os.makedirs(d, exist_ok=True)
    ev = []
    for u in ("u1", "u2"):
        for k in range(5):
            ev.append({"user_id": u, "item_id": f"i{k}", "timestamp": 1_700_000_000 + k,
                       "query": "red shoes" if k % 2 else None, "label": 1 if k != 2 else 0})
    lines = [json.dumps(e) for e in ev]
    if bad:
        lines += ["not json", json.dumps({"user_id": "u3", "item_id": "i1"}),
                  json.dumps({"user_id": "u3", "item_id": "i1", "timestamp": 5,
                              "source": "radio"})]
    with open(os.path.join(d, "events.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(d, "items.jsonl"), "w", encoding="utf-8") as f:
        for k in range(5):
            f.write(json.dumps({"item_id": f"i{k}", "title": f"Red shoe {k}",
                                "categories": ["shoes", f"size{k}"],
                                "text_vector": [0.1 * k, 1.0, 2.0]}) + "\n")
    return d
