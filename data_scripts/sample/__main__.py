from . import write_json_lines

if __name__ == "__main__":
    for split, n in write_json_lines().items():
        print(f"{split}: {n} sentences")
