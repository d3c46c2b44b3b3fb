"""Calibration constants for the synthetic Olist generator.

These are aggregate figures and labels (category names, state shares, monthly volumes, marginal
mixes) measured on the public Olist data; no data rows are embedded here.
"""

from __future__ import annotations

# (portuguese, english or None when the real translation file lacks it, relative product share)
CATEGORIES: tuple[tuple[str, str | None, int], ...] = (
    ("beleza_saude", "health_beauty", 2444), ("informatica_acessorios", "computers_accessories", 1639),
    ("automotivo", "auto", 1900), ("cama_mesa_banho", "bed_bath_table", 3029),
    ("moveis_decoracao", "furniture_decor", 2657), ("esporte_lazer", "sports_leisure", 2867),
    ("perfumaria", "perfumery", 868), ("utilidades_domesticas", "housewares", 2335),
    ("telefonia", "telephony", 1134), ("relogios_presentes", "watches_gifts", 1329),
    ("alimentos_bebidas", "food_drink", 104), ("bebes", "baby", 919), ("papelaria", "stationery", 849),
    ("tablets_impressao_imagem", "tablets_printing_image", 9), ("brinquedos", "toys", 1411),
    ("telefonia_fixa", "fixed_telephony", 116), ("ferramentas_jardim", "garden_tools", 753),
    ("fashion_bolsas_e_acessorios", "fashion_bags_accessories", 849), ("eletroportateis", "small_appliances", 231),
    ("consoles_games", "consoles_games", 317), ("audio", "audio", 58), ("fashion_calcados", "fashion_shoes", 173),
    ("cool_stuff", "cool_stuff", 789), ("malas_acessorios", "luggage_accessories", 349),
    ("climatizacao", "air_conditioning", 124),
    ("construcao_ferramentas_construcao", "construction_tools_construction", 400),
    ("moveis_cozinha_area_de_servico_jantar_e_jardim", "kitchen_dining_laundry_garden_furniture", 94),
    ("construcao_ferramentas_jardim", "costruction_tools_garden", 88),
    ("fashion_roupa_masculina", "fashion_male_clothing", 95), ("pet_shop", "pet_shop", 719),
    ("moveis_escritorio", "office_furniture", 309), ("market_place", "market_place", 104),
    ("eletronicos", "electronics", 517), ("eletrodomesticos", "home_appliances", 370),
    ("artigos_de_festas", "party_supplies", 26), ("casa_conforto", "home_confort", 111),
    ("construcao_ferramentas_ferramentas", "costruction_tools_tools", 39),
    ("agro_industria_e_comercio", "agro_industry_and_commerce", 74),
    ("moveis_colchao_e_estofado", "furniture_mattress_and_upholstery", 10),
    ("livros_tecnicos", "books_technical", 123), ("casa_construcao", "home_construction", 225),
    ("instrumentos_musicais", "musical_instruments", 289), ("moveis_sala", "furniture_living_room", 156),
    ("construcao_ferramentas_iluminacao", "construction_tools_lights", 78),
    ("industria_comercio_e_negocios", "industry_commerce_and_business", 68), ("alimentos", "food", 82),
    ("artes", "art", 55), ("moveis_quarto", "furniture_bedroom", 45),
    ("livros_interesse_geral", "books_general_interest", 216),
    ("construcao_ferramentas_seguranca", "construction_tools_safety", 91),
    ("fashion_underwear_e_moda_praia", "fashion_underwear_beach", 53), ("fashion_esporte", "fashion_sport", 19),
    ("sinalizacao_e_seguranca", "signaling_and_security", 93), ("pcs", "computers", 30),
    ("artigos_de_natal", "christmas_supplies", 65), ("fashion_roupa_feminina", "fashio_female_clothing", 27),
    ("eletrodomesticos_2", "home_appliances_2", 90), ("livros_importados", "books_imported", 31),
    ("bebidas", "drinks", 81), ("cine_foto", "cine_photo", 28), ("la_cuisine", "la_cuisine", 10),
    ("musica", "music", 27), ("casa_conforto_2", "home_comfort_2", 5),
    ("portateis_casa_forno_e_cafe", "small_appliances_home_oven_and_coffee", 31),
    ("cds_dvds_musicais", "cds_dvds_musicals", 1), ("dvds_blu_ray", "dvds_blu_ray", 48), ("flores", "flowers", 14),
    ("artes_e_artesanato", "arts_and_craftmanship", 19), ("fraldas_higiene", "diapers_and_hygiene", 12),
    ("fashion_roupa_infanto_juvenil", "fashion_childrens_clothes", 5),
    ("seguros_e_servicos", "security_and_services", 2),
    # used by products but missing from the real translation file (a real left-join gap)
    ("portateis_cozinha_e_preparadores_de_alimentos", None, 10), ("pc_gamer", None, 3),
)

# median item price (BRL) and median product weight (g) per category (rounded aggregates)
CATEGORY_PRICE: dict[str, float] = {
    "agro_industria_e_comercio": 259, "climatizacao": 140, "construcao_ferramentas_seguranca": 126,
    "cool_stuff": 130, "eletrodomesticos_2": 226, "industria_comercio_e_negocios": 103, "la_cuisine": 137,
    "moveis_escritorio": 145, "moveis_quarto": 179, "moveis_sala": 104, "pc_gamer": 130, "pcs": 1100,
    "portateis_casa_forno_e_cafe": 587, "relogios_presentes": 129, "seguros_e_servicos": 142,
    "telefonia": 30, "eletronicos": 22, "dvds_blu_ray": 20, "casa_conforto_2": 13, "alimentos_bebidas": 39,
    "moveis_cozinha_area_de_servico_jantar_e_jardim": 110, "construcao_ferramentas_iluminacao": 104,
    "malas_acessorios": 100, "utilidades_domesticas": 60, "fashion_bolsas_e_acessorios": 49,
}
CATEGORY_WEIGHT: dict[str, float] = {
    "moveis_escritorio": 10975, "moveis_quarto": 10700, "moveis_sala": 7500, "eletrodomesticos_2": 7500,
    "moveis_cozinha_area_de_servico_jantar_e_jardim": 6450, "industria_comercio_e_negocios": 6100,
    "portateis_casa_forno_e_cafe": 3800, "climatizacao": 2950, "pcs": 2800, "pc_gamer": 2839,
    "agro_industria_e_comercio": 2650, "la_cuisine": 2450, "casa_conforto": 1825, "moveis_colchao_e_estofado": 1700,
    "ferramentas_jardim": 1650, "cool_stuff": 1450, "cama_mesa_banho": 1275, "moveis_decoracao": 1300,
    "telefonia": 225, "eletronicos": 200, "fashion_bolsas_e_acessorios": 200, "relogios_presentes": 348,
    "informatica_acessorios": 300, "beleza_saude": 400, "perfumaria": 400, "consoles_games": 250,
}
DEFAULT_PRICE, DEFAULT_WEIGHT = 80.0, 800.0

# state: (customer share, seller share, zip prefix range, lat, lng, lat sd, lng sd, cities)
STATES: dict[str, tuple[float, float, tuple[int, int], float, float, float, float, tuple[str, ...]]] = {
    "SP": (0.4198, 0.5974, (1000, 19999), -23.53, -46.69, 0.85, 1.14,
           ("sao paulo", "campinas", "guarulhos", "santo andre", "sao jose dos campos", "ribeirao preto", "sorocaba", "osasco")),
    "RJ": (0.1292, 0.0553, (20000, 28999), -22.87, -43.24, 0.52, 0.64,
           ("rio de janeiro", "niteroi", "nova iguacu", "duque de caxias", "sao goncalo", "petropolis")),
    "ES": (0.0204, 0.0074, (29000, 29999), -20.29, -40.32, 0.83, 0.79, ("vitoria", "vila velha", "serra", "cariacica")),
    "MG": (0.1170, 0.0788, (30000, 39999), -19.92, -43.98, 1.42, 1.75,
           ("belo horizonte", "uberlandia", "contagem", "juiz de fora", "betim", "montes claros")),
    "BA": (0.0340, 0.0061, (40000, 48999), -12.96, -38.96, 1.63, 1.69, ("salvador", "feira de santana", "vitoria da conquista", "camacari")),
    "SE": (0.0035, 0.0006, (49000, 49999), -10.93, -37.07, 0.26, 0.26, ("aracaju", "nossa senhora do socorro")),
    "PE": (0.0166, 0.0029, (50000, 56999), -8.08, -34.95, 0.48, 1.54, ("recife", "jaboatao dos guararapes", "olinda", "caruaru")),
    "AL": (0.0042, 0.0002, (57000, 57999), -9.64, -35.75, 0.98, 0.97, ("maceio", "arapiraca")),
    "PB": (0.0054, 0.0019, (58000, 58999), -7.13, -35.49, 0.70, 1.23, ("joao pessoa", "campina grande")),
    "RN": (0.0049, 0.0016, (59000, 59999), -5.84, -35.26, 0.43, 1.04, ("natal", "mossoro", "parnamirim")),
    "CE": (0.0134, 0.0042, (60000, 63999), -3.79, -38.59, 1.19, 0.81, ("fortaleza", "caucaia", "juazeiro do norte")),
    "PI": (0.0050, 0.0003, (64000, 64999), -5.10, -42.76, 1.66, 0.84, ("teresina", "parnaiba")),
    "MA": (0.0075, 0.0003, (65000, 65999), -3.29, -44.30, 1.52, 1.25, ("sao luis", "imperatriz")),
    "PA": (0.0098, 0.0003, (66000, 68899), -1.46, -48.48, 2.30, 2.45, ("belem", "ananindeua", "santarem")),
    "AP": (0.0007, 0.0001, (68900, 68999), 0.03, -51.07, 1.49, 0.43, ("macapa",)),
    "AM": (0.0015, 0.0003, (69000, 69299), -3.09, -60.01, 1.09, 2.10, ("manaus",)),
    "RR": (0.0005, 0.0001, (69300, 69399), 2.82, -60.70, 0.48, 0.23, ("boa vista",)),
    "AC": (0.0008, 0.0003, (69900, 69999), -9.96, -67.83, 1.10, 2.01, ("rio branco",)),
    "DF": (0.0215, 0.0097, (70000, 72799), -15.82, -47.94, 0.12, 0.42, ("brasilia", "taguatinga")),
    "GO": (0.0203, 0.0129, (72800, 76799), -16.68, -49.27, 1.09, 1.12, ("goiania", "aparecida de goiania", "anapolis")),
    "RO": (0.0025, 0.0006, (76800, 76999), -10.43, -63.02, 1.44, 1.32, ("porto velho", "ji-parana")),
    "TO": (0.0028, 0.0001, (77000, 77999), -10.18, -48.33, 1.94, 0.59, ("palmas", "araguaina")),
    "MT": (0.0091, 0.0013, (78000, 78899), -15.24, -56.04, 2.13, 1.93, ("cuiaba", "varzea grande", "rondonopolis")),
    "MS": (0.0072, 0.0016, (79000, 79999), -20.48, -54.61, 1.24, 1.29, ("campo grande", "dourados")),
    "PR": (0.0507, 0.1128, (80000, 87999), -25.38, -50.62, 1.09, 1.74, ("curitiba", "londrina", "maringa", "ponta grossa", "cascavel")),
    "SC": (0.0366, 0.0614, (88000, 89999), -27.10, -49.04, 0.69, 1.40, ("florianopolis", "joinville", "blumenau", "itajai")),
    "RS": (0.0550, 0.0417, (90000, 99999), -29.80, -51.25, 1.04, 1.54, ("porto alegre", "caxias do sul", "canoas", "pelotas", "santa maria")),
}

# orders per month in the real data (aggregate volume curve, including its sparse edges)
MONTHLY_ORDERS: dict[str, int] = {
    "2016-09": 4, "2016-10": 324, "2016-11": 0, "2016-12": 1,
    "2017-01": 800, "2017-02": 1780, "2017-03": 2682, "2017-04": 2404, "2017-05": 3700, "2017-06": 3245,
    "2017-07": 4026, "2017-08": 4331, "2017-09": 4285, "2017-10": 4631, "2017-11": 7544, "2017-12": 5673,
    "2018-01": 7269, "2018-02": 6728, "2018-03": 7211, "2018-04": 6939, "2018-05": 6873, "2018-06": 6167,
    "2018-07": 6292, "2018-08": 6512, "2018-09": 16, "2018-10": 4,
}
BLACK_FRIDAY = "2017-11-24"
SNAPSHOT = "2018-10-17 17:30:00"  # the data is observed up to here: later events do not exist yet
DOW_WEIGHTS = (0.163, 0.161, 0.156, 0.148, 0.142, 0.109, 0.120)  # Mon..Sun
HOUR_WEIGHTS = (0.024, 0.012, 0.005, 0.003, 0.002, 0.002, 0.005, 0.012, 0.03, 0.048, 0.062, 0.066, 0.06,
                0.066, 0.066, 0.065, 0.067, 0.062, 0.058, 0.06, 0.062, 0.063, 0.058, 0.041)

# order status mix (share of orders) besides delivered
STATUS_RATES: dict[str, float] = {
    "shipped": 0.0111, "canceled": 0.0063, "unavailable": 0.0061, "invoiced": 0.0032,
    "processing": 0.0030, "created": 0.00005, "approved": 0.00002,
}
ITEMS_PER_ORDER = {1: 0.8936, 2: 0.0756, 3: 0.0133, 4: 0.0051, 5: 0.0021, 6: 0.0020, 7: 0.0002, 8: 0.0001}
CC_INSTALLMENTS = {1: 0.331, 2: 0.162, 3: 0.136, 4: 0.092, 5: 0.068, 6: 0.051, 7: 0.021, 8: 0.056,
                   9: 0.008, 10: 0.069, 12: 0.002, 15: 0.001, 18: 0.001, 24: 0.001}

# marketing funnel
MQL_MONTHLY: dict[str, int] = {
    "2017-06": 4, "2017-07": 239, "2017-08": 386, "2017-09": 312, "2017-10": 416, "2017-11": 445,
    "2017-12": 200, "2018-01": 1141, "2018-02": 1028, "2018-03": 1174, "2018-04": 1352, "2018-05": 1303,
}
# origin: (share of MQLs, share closed); "" = missing origin
ORIGINS: dict[str, tuple[float, float]] = {
    "organic_search": (2296, 0.118), "paid_search": (1586, 0.123), "social": (1350, 0.056), "unknown": (1099, 0.163),
    "direct_traffic": (499, 0.112), "email": (493, 0.030), "referral": (284, 0.085), "other": (150, 0.027),
    "display": (118, 0.051), "other_publicities": (65, 0.046), "": (60, 0.233),
}
# business_segment: (count among deals, activation log-odds effect)
SEGMENTS: dict[str, tuple[int, float]] = {
    "home_decor": (105, -0.1), "health_beauty": (93, 0.1), "car_accessories": (77, -0.4),
    "household_utilities": (71, 0.6), "construction_tools_house_garden": (69, 0.1),
    "audio_video_electronics": (64, 0.1), "computers": (34, -0.6), "pet": (30, 0.5), "food_supplement": (28, 0.0),
    "food_drink": (26, -0.3), "sports_leisure": (25, 0.2), "bed_bath_table": (22, 0.3), "bags_backpacks": (22, 0.0),
    "toys": (20, 0.2), "fashion_accessories": (19, -0.5), "home_office_furniture": (14, 0.0), "stationery": (13, 0.0),
    "phone_mobile": (13, -0.3), "small_appliances": (12, 0.2), "handcrafted": (12, -0.6), "baby": (10, 0.0),
    "music_instruments": (9, 0.0), "books": (9, 0.0), "watches": (8, 0.0), "jewerly": (8, -0.5),
    "home_appliances": (7, 0.0), "party": (5, 0.0), "gifts": (5, 0.0), "other": (3, -1.0),
    "air_conditioning": (3, 0.0), "perfume": (2, 0.0), "games_consoles": (2, 0.0), "religious": (1, 0.0), "": (1, 0.0),
}
LEAD_TYPES: dict[str, tuple[int, float]] = {
    "online_medium": (332, 0.25), "online_big": (126, 0.9), "industry": (123, -0.5), "offline": (104, -0.8),
    "online_small": (77, -0.4), "online_beginner": (57, -0.3), "online_top": (14, 0.1), "": (6, -0.5),
    "other": (3, -1.5),
}
BEHAVIOUR: dict[str, tuple[int, float]] = {
    "cat": (407, 0.1), "": (177, -0.2), "eagle": (123, -0.1), "wolf": (95, 0.1), "shark": (24, -0.1),
    "cat, wolf": (8, -0.8), "eagle, wolf": (3, -0.8), "eagle, cat": (3, -0.4), "shark, cat": (1, -0.8),
    "shark, wolf": (1, -0.8),
}
BUSINESS_TYPES: dict[str, tuple[int, float]] = {"reseller": (587, 0.25), "manufacturer": (242, -0.35), "": (10, 0.0), "other": (3, -1.5)}
AVERAGE_STOCK = {"5-20": 22, "50-200": 15, "1-5": 10, "20-50": 8, "200+": 7, "unknown": 4}

REVIEW_TITLES = {
    1: ("Péssimo", "Não recebi o produto", "Não recomendo", "Produto errado", "Horrível"),
    2: ("Ruim", "Demorou", "Não gostei", "Produto com defeito"),
    3: ("Regular", "Razoável", "Mais ou menos", "Entrega atrasou"),
    4: ("Bom", "Muito bom", "Gostei", "recomendo"),
    5: ("Ótimo", "Excelente", "Super recomendo", "Perfeito", "Maravilhoso!", "Nota 10"),
}
REVIEW_MESSAGES = {
    1: ("Até agora não recebi o produto.", "Produto veio quebrado, quero meu dinheiro de volta.",
        "Comprei dois itens e só recebi um", "Péssimo atendimento, não recomendo essa loja",
        "O prazo de entrega passou e nada \"em trânsito\" ainda"),
    2: ("Produto de qualidade inferior ao anunciado.", "Entrega muito demorada, produto ok",
        "Veio diferente da foto, mas funciona"),
    3: ("Produto bom, mas a entrega atrasou.", "Razoável, esperava mais", "Chegou com a embalagem amassada, porém inteiro"),
    4: ("Gostei do produto, recomendo.", "Chegou antes do prazo, muito bom", "Bom produto, bem embalado"),
    5: ("Excelente produto, entrega antes do prazo!", "Recomendo o vendedor, tudo certo.", "Muito bom, chegou rápido",
        "Produto de ótima qualidade, recomendo", "Vendedor confiável, produto ok e entrega antes do prazo."),
}
