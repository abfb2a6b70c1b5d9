#!/usr/bin/env python3
"""Writes a realistic contact list for import benchmarks: Japanese headers, names, companies,
titles, industries and head counts, one distinct e-mail per row; deterministic for a seed.

    scripts/gen-contacts.py 100000 /tmp/contacts.csv [--cp932] [--seed 1]
"""
import argparse
import random

LAST = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田"]
FIRST = ["太郎", "花子", "一郎", "美咲", "健太", "陽子", "大輔", "由美", "翔", "真理"]
COMPANY = ["株式会社サンプル", "テスト工業株式会社", "日本データ株式会社", "未来システム株式会社", "東京商事株式会社"]
DEPT = ["営業部", "マーケティング部", "情報システム部", "経営企画部", "総務部"]
TITLE = ["部長", "課長", "係長", "主任", "担当", "代表取締役", "マネージャー", "CTO"]
INDUSTRY = ["IT", "製造", "小売", "金融", "不動産", "教育"]
EMPLOYEES = ["10", "50", "120", "300", "800", "1500", "5000"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("rows", type=int)
    p.add_argument("out")
    p.add_argument("--cp932", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rnd = random.Random(a.seed)
    enc = "cp932" if a.cp932 else "utf-8"
    with open(a.out, "w", encoding=enc, newline="") as f:
        f.write("メールアドレス,姓,名,会社名,部署,役職,業種,従業員数,電話番号\r\n")
        for i in range(a.rows):
            f.write(
                f"user{a.seed}-{i}@example{i % 97}.co.jp,{rnd.choice(LAST)},{rnd.choice(FIRST)},"
                f"{rnd.choice(COMPANY)},{rnd.choice(DEPT)},{rnd.choice(TITLE)},{rnd.choice(INDUSTRY)},"
                f"{rnd.choice(EMPLOYEES)},03-{rnd.randint(1000, 9999)}-{rnd.randint(1000, 9999)}\r\n"
            )


if __name__ == "__main__":
    main()
