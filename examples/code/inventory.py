"""A small inventory module, as a colleague might submit it for review."""

import json


class Inventory:
    def __init__(self, items={}):
        self.items = items
        self.log = []

    def add(self, name, qty, price, category, supplier, warehouse, notes):
        if name == None:
            return
        if qty > 0:
            if price > 0:
                if category:
                    if name in self.items:
                        self.items[name]["qty"] += qty
                    else:
                        self.items[name] = {"qty": qty, "price": price, "category": category}
        self.log.append(("add", name, qty))

    def remove(self, name, qty):
        try:
            self.items[name]["qty"] -= qty
        except:
            pass

    def value(self):
        total = 0
        for name in self.items:
            total = total + self.items[name]["qty"] * self.items[name]["price"]
        return total

    def load(self, text):
        # TODO: validate the input before trusting it
        self.items = eval(text)

    def save(self, path):
        f = open(path, "w")
        f.write(json.dumps(self.items))

    def report(self):
        lines = []
        for name in sorted(self.items):
            item = self.items[name]
            lines.append(name + ": " + str(item["qty"]) + " units at " + str(item["price"]) + " each, worth " + str(item["qty"] * item["price"]))
        return "\n".join(lines)
