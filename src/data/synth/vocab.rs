//! Word lists the generators draw from. Everything is lowercase ASCII (capitalized where used as a
//! name) so the written files are plain ASCII, like the real sources after `json.dumps`.

/// People in math word problems: (name, subject pronoun, possessive pronoun).
pub(super) const PEOPLE: &[(&str, &str, &str)] = &[
    ("Mia", "she", "her"),
    ("Ana", "she", "her"),
    ("Lena", "she", "her"),
    ("Rosa", "she", "her"),
    ("Nora", "she", "her"),
    ("Ella", "she", "her"),
    ("Ivy", "she", "her"),
    ("Zoe", "she", "her"),
    ("Lily", "she", "her"),
    ("Maya", "she", "her"),
    ("Emma", "she", "her"),
    ("Sara", "she", "her"),
    ("Tina", "she", "her"),
    ("Julia", "she", "her"),
    ("Hana", "she", "her"),
    ("Eva", "she", "her"),
    ("Clara", "she", "her"),
    ("Nina", "she", "her"),
    ("Lucy", "she", "her"),
    ("Grace", "she", "her"),
    ("Leo", "he", "his"),
    ("Sam", "he", "his"),
    ("Ben", "he", "his"),
    ("Tom", "he", "his"),
    ("Omar", "he", "his"),
    ("Raj", "he", "his"),
    ("Max", "he", "his"),
    ("Eli", "he", "his"),
    ("Noah", "he", "his"),
    ("Jack", "he", "his"),
    ("Ivan", "he", "his"),
    ("Carl", "he", "his"),
    ("Paul", "he", "his"),
    ("Hugo", "he", "his"),
    ("Kofi", "he", "his"),
    ("Luis", "he", "his"),
    ("Dan", "he", "his"),
    ("Finn", "he", "his"),
    ("Theo", "he", "his"),
    ("Adam", "he", "his"),
];

/// Countable things in math word problems: (plural, singular, container plural).
pub(super) const THINGS: &[(&str, &str, &str)] = &[
    ("apples", "apple", "bags"),
    ("stickers", "sticker", "sheets"),
    ("marbles", "marble", "jars"),
    ("cookies", "cookie", "boxes"),
    ("pencils", "pencil", "packs"),
    ("eggs", "egg", "cartons"),
    ("shells", "shell", "buckets"),
    ("cards", "card", "packs"),
    ("candies", "candy", "bags"),
    ("books", "book", "boxes"),
    ("flowers", "flower", "bunches"),
    ("balloons", "balloon", "packs"),
    ("stamps", "stamp", "sheets"),
    ("muffins", "muffin", "trays"),
    ("crayons", "crayon", "boxes"),
    ("buttons", "button", "tins"),
    ("cupcakes", "cupcake", "trays"),
    ("beads", "bead", "jars"),
    ("toy cars", "toy car", "boxes"),
    ("oranges", "orange", "crates"),
];

/// Short common words for transformation tasks (phrases, sentences).
pub(super) const WORDS: &[&str] = &[
    "red", "fox", "blue", "sky", "green", "tree", "small", "house", "happy", "dog", "cold", "rain",
    "bright", "star", "quiet", "river", "fast", "car", "old", "book", "warm", "sun", "little",
    "bird", "big", "ship", "soft", "bread", "new", "song", "dark", "night", "sweet", "tea", "tall",
    "tower", "round", "moon", "yellow", "lamp", "open", "door", "wild", "horse", "clean", "water",
    "early", "train", "gold", "ring", "brave", "king", "long", "road", "fresh", "milk", "deep",
    "lake", "kind", "heart", "paper", "boat", "stone", "wall", "snow", "field", "city", "light",
];

/// Named categories with their members, for listing and yes/no tasks: (plural, singular, members).
pub(super) const CATEGORIES: &[(&str, &str, &[&str])] = &[
    (
        "fruits",
        "fruit",
        &[
            "apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear", "plum",
            "kiwi", "melon", "fig",
        ],
    ),
    (
        "colors",
        "color",
        &[
            "red", "blue", "green", "yellow", "pink", "brown", "black", "white", "purple", "gray",
        ],
    ),
    (
        "animals",
        "animal",
        &[
            "cat", "dog", "horse", "cow", "sheep", "goat", "lion", "tiger", "bear", "wolf", "fox",
            "rabbit",
        ],
    ),
    (
        "vegetables",
        "vegetable",
        &[
            "carrot", "potato", "onion", "pea", "bean", "corn", "cabbage", "lettuce", "leek",
            "spinach",
        ],
    ),
    (
        "tools",
        "tool",
        &[
            "hammer",
            "saw",
            "drill",
            "wrench",
            "screwdriver",
            "pliers",
            "chisel",
            "shovel",
            "rake",
            "axe",
        ],
    ),
    (
        "instruments",
        "instrument",
        &[
            "piano", "guitar", "violin", "drum", "flute", "harp", "trumpet", "cello", "banjo",
            "oboe",
        ],
    ),
];

/// Colors for in-context lookups (the "colors" category).
pub(super) const COLORS: &[&str] = CATEGORIES[1].2;

/// Objects that have a color in in-context lookups.
pub(super) const OBJECTS: &[&str] = &[
    "kite", "bike", "hat", "cup", "ball", "scarf", "car", "bag", "lamp", "chair", "boat", "coat",
];

/// Antonym pairs.
pub(super) const OPPOSITES: &[(&str, &str)] = &[
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("light", "dark"),
    ("up", "down"),
    ("open", "closed"),
    ("early", "late"),
    ("full", "empty"),
    ("old", "young"),
    ("strong", "weak"),
    ("loud", "quiet"),
    ("high", "low"),
    ("wet", "dry"),
    ("hard", "soft"),
    ("rich", "poor"),
    ("long", "short"),
    ("thick", "thin"),
    ("clean", "dirty"),
    ("near", "far"),
    ("first", "last"),
    ("day", "night"),
    ("push", "pull"),
    ("buy", "sell"),
];

/// Topics and adjectives for length-constrained sentences.
pub(super) const TOPICS: &[&str] = &[
    "cat", "dog", "rain", "sun", "tree", "river", "bird", "garden", "train", "book", "song",
    "winter",
];
pub(super) const ADJECTIVES: &[&str] = &[
    "small", "old", "quiet", "bright", "happy", "little", "calm", "lovely", "strange", "gentle",
];

/// Directories and files for shell-command tasks.
pub(super) const DIRS: &[&str] = &[
    "docs", "src", "photos", "notes", "music", "backup", "logs", "data",
];
pub(super) const FILES: &[&str] = &[
    "notes.txt",
    "todo.txt",
    "log.txt",
    "data.csv",
    "report.md",
    "list.txt",
    "main.py",
    "config.ini",
];

/// Identifier parts for snake_case and Python how-to tasks.
pub(super) const IDENT_PARTS: &[&str] = &[
    "user", "name", "total", "count", "max", "value", "file", "path", "item", "price", "score",
    "index", "first", "last", "page", "size", "start", "end", "time", "color",
];
pub(super) const LIST_VARS: &[&str] = &["items", "names", "scores", "values", "numbers", "words"];
pub(super) const STR_VARS: &[&str] = &["name", "title", "text", "word", "label", "line"];

/// Syllables for the generated world's people and cities (cities get a suffix, so the two never
/// collide).
pub(super) const SYLLABLES: &[&str] = &[
    "ba", "be", "bo", "da", "de", "di", "fa", "fe", "ka", "ke", "ki", "lo", "lu", "ma", "me", "mi",
    "na", "ne", "no", "ra", "re", "ri", "sa", "se", "ta", "te", "to", "va", "ve", "zo",
];
pub(super) const CITY_SUFFIXES: &[&str] = &["ton", "by", "ford", "dale", "port", "wick"];

/// Jobs and pets in the generated world.
pub(super) const JOBS: &[&str] = &[
    "baker", "farmer", "teacher", "painter", "doctor", "sailor", "tailor", "miner", "pilot",
    "singer",
];
pub(super) const PETS: &[&str] = &[
    "cat", "dog", "parrot", "rabbit", "hamster", "turtle", "goldfish", "lizard",
];
